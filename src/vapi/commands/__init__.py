"""`vapi` subcommands: one module each, with `add_parser(subparsers)` and `run(args)`."""
from __future__ import annotations

import argparse
import re

from vapi.config import describe

# Marks a config-driven parser (see normalize_overrides). An attribute on the parser itself, not a global set of
# id()s: a new parser is built per `main()` call, and a stale id can be reused by an unrelated parser of a later call.
_CONFIG_DRIVEN = "_vapi_config_driven"


class UserError(Exception):
    """Bad input from the user: `vapi.cli.main` prints it as one line and exits 2, without a traceback."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and each option's default after its help (unless the help already states
    it, or there is none: None, empty, a false switch)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (default in (None, "", False, argparse.SUPPRESS) or "default" in text or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)".strip()


def add_config_parser(subparsers, name: str, cfg_cls, help: str, description: str,
                      config_help: str = "YAML file of options", positional: tuple | None = None
                      ) -> argparse.ArgumentParser:
    """A subcommand driven by a config dataclass: `--help` lists every option with its default, and the parser takes
    `--config FILE` (YAML, or the name of a config shipped with vapi) then overrides written `key=value`,
    `--key value` or `--key=value` (resolve them with `vapi.config.load_config`); `positional` = (name, kwargs) adds
    one positional argument before them."""
    parser = subparsers.add_parser(name, help=help, description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog="options (key = default  help):\n" + "\n".join(describe(cfg_cls)))
    parser.add_argument("--config", metavar="FILE", help=config_help + "; or the name of a shipped config")
    if positional:  # (name, add_argument kwargs): a positional that comes before the overrides
        parser.add_argument(positional[0], **positional[1])
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="option overrides (also --key value or --key=value)")
    setattr(parser, _CONFIG_DRIVEN, True)
    return parser


def add_flag_aliases(parser: argparse.ArgumentParser, cfg_cls, aliases: dict[str, str]) -> None:
    """Drive a flag-style subcommand by a config dataclass, like `train`: it also takes `--config FILE` and
    `key=value` overrides, and each of its own flags (argparse dest → dotted option in `aliases`) is an alias of an
    option, applied only when given. Precedence: defaults < YAML < given flags < key=value (`config_from_args`)."""
    parser.add_argument("--config", metavar="FILE", help="YAML file of options (see the list below)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="option overrides, e.g. sampling.top_k=0 (also --key value or --key=value)")
    parser.epilog = "options (key = default  help):\n" + "\n".join(describe(cfg_cls))
    parser.set_defaults(_config_cls=cfg_cls, _aliases=aliases)
    for action in parser._actions:
        if action.dest in aliases:
            action.__class__ = _recording(type(action))
    setattr(parser, _CONFIG_DRIVEN, True)


def _recording(action_cls: type) -> type:
    """`action_cls` that also notes its dest in `namespace._given` when the command line uses it."""

    class Recorded(action_cls):
        def __call__(self, parser, namespace, values, option_string=None):
            super().__call__(parser, namespace, values, option_string)
            namespace.__dict__.setdefault("_given", set()).add(self.dest)

    return Recorded


def config_from_args(args: argparse.Namespace):
    """The config of a command built by `add_flag_aliases`: defaults < --config < the flags given < key=value."""
    from vapi.config import load_config

    given = {args._aliases[dest]: getattr(args, dest) for dest in sorted(getattr(args, "_given", ()))}
    return load_config(args._config_cls, args.config, args.overrides, values=given)


def _subparser(parser: argparse.ArgumentParser, token: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(token)
    return None


def normalize_overrides(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """Rewrite `--a.b value` / `--a.b=value` as `a.b=value` after a config-driven subcommand (TRL / HfArgumentParser
    habits); options the subcommand itself declares (--config, --resume, --help) are left alone. A flag without a
    value (`--train.progress`) means true."""
    out, i = [], 0
    while i < len(argv):
        sub = _subparser(parser, argv[i])
        if sub is not None:
            if getattr(sub, _CONFIG_DRIVEN, False):
                return out + [argv[i]] + _rewrite(sub, argv[i + 1:])
            parser = sub
        out.append(argv[i])
        i += 1
    return out


# `key=value` with a dotted option name before the `=`: the next override, not the value of a bare `--flag`
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def _rewrite(parser: argparse.ArgumentParser, tokens: list[str]) -> list[str]:
    known = set(parser._option_string_actions)
    out, i = [], 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "--":
            return out + tokens[i:]
        if tok.startswith("--") and len(tok) > 2 and tok.split("=", 1)[0] not in known:
            key, eq, value = tok[2:].partition("=")
            if not eq:
                nxt = tokens[i + 1] if i + 1 < len(tokens) else None
                if nxt is not None and not nxt.startswith("--") and not _OVERRIDE.match(nxt):
                    value, i = nxt, i + 1
                else:
                    value = "true"
            tok = f"{key}={value}"
        out.append(tok)
        i += 1
    return _overrides_after_first_positional(parser, out)


def _overrides_after_first_positional(parser: argparse.ArgumentParser, tokens: list[str]) -> list[str]:
    """argparse fills every positional from the first run of positional tokens, so with a positional before
    `overrides` (`vapi eval SAMPLES ...`) a `key=value` written after an option would be refused: move the overrides
    right behind that first positional. Option values (`--ref a=b.npz`) stay where they are."""
    if "--" in tokens or not any(not a.option_strings and a.dest != "overrides" for a in parser._actions):
        return tokens
    kinds, value_next = [], False  # per token: "option", "value" (of the option before it) or "positional"
    for tok in tokens:
        is_option = tok.startswith("-") and len(tok) > 1
        kinds.append("option" if is_option else "value" if value_next else "positional")
        action = parser._option_string_actions.get(tok.split("=", 1)[0]) if is_option else None
        value_next = action is not None and action.nargs != 0 and "=" not in tok
    overrides = [t for t, k in zip(tokens, kinds) if k == "positional" and "=" in t]
    rest = [(t, k) for t, k in zip(tokens, kinds) if not (k == "positional" and "=" in t)]
    first = next((i for i, (_, k) in enumerate(rest) if k == "positional"), len(rest) - 1)
    return [t for t, _ in rest[:first + 1]] + overrides + [t for t, _ in rest[first + 1:]]
