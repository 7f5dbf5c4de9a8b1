"""`vapi` subcommands: one module each, with `add_parser(subparsers)` and `run(args)`."""
from __future__ import annotations

import argparse

from vapi.config import describe

CONFIG_PARSERS: set[int] = set()


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
        return f"{text} (default: %(default)s)".strip()  # ids of the parsers add_config_parser built



def add_config_parser(subparsers, name: str, cfg_cls, help: str, description: str,
                      config_help: str = "YAML file of options") -> argparse.ArgumentParser:
    """A subcommand driven by a config dataclass: `--help` lists every option with its default, and the parser takes
    `--config FILE` (YAML, or the name of a config shipped with vapi) then overrides written `key=value`,
    `--key value` or `--key=value` (resolve them with `vapi.config.load_config`)."""
    parser = subparsers.add_parser(name, help=help, description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog="options (key = default  help):\n" + "\n".join(describe(cfg_cls)))
    parser.add_argument("--config", metavar="FILE", help=config_help + "; or the name of a shipped config")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="option overrides (also --key value or --key=value)")
    CONFIG_PARSERS.add(id(parser))
    return parser


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
            if id(sub) in CONFIG_PARSERS:
                return out + [argv[i]] + _rewrite(sub, argv[i + 1:])
            parser = sub
        out.append(argv[i])
        i += 1
    return out


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
                if nxt is not None and not nxt.startswith("--") and "=" not in nxt:
                    value, i = nxt, i + 1
                else:
                    value = "true"
            tok = f"{key}={value}"
        out.append(tok)
        i += 1
    return out
