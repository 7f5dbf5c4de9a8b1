"""`vapi` command line: one subcommand per module in `vapi.commands`; parsing only, the work is in the library."""
from __future__ import annotations

import argparse
import importlib
import sys

from vapi.commands import UserError
from vapi.errors import one_line

# Each module defines `add_parser(subparsers)` (registering its parser with `func=run`) and `run(args) -> int`.
COMMANDS = ("train", "sample", "eval", "convert", "inspect", "report", "env", "download", "pretrain", "demo", "ablate")


def build_parser() -> argparse.ArgumentParser:
    from vapi import __version__

    parser = argparse.ArgumentParser(prog="vapi", description="VA-pi post-training for autoregressive image generators")
    parser.add_argument("--version", action="version", version=f"vapi {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"vapi.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"vapi.commands.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from vapi.commands import normalize_overrides

    parser = build_parser()
    args = parser.parse_args(normalize_overrides(parser, list(sys.argv[1:] if argv is None else argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except Exception as e:
        message = str(e) if isinstance(e, UserError) else one_line(e)
        if message is None:
            raise
        print(f"vapi {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vapi {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
