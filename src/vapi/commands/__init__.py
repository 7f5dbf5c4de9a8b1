"""`vapi` subcommands: one module each, with `add_parser(subparsers)` and `run(args)`."""
from __future__ import annotations

import argparse

from vapi.config import describe


def add_config_parser(subparsers, name: str, cfg_cls, help: str, description: str,
                      config_help: str = "YAML file of options") -> argparse.ArgumentParser:
    """A subcommand driven by a config dataclass: `--help` lists every option with its default, and the parser takes
    `--config FILE` (YAML) then `key=value` overrides (resolve them with `vapi.config.load_config`)."""
    parser = subparsers.add_parser(name, help=help, description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog="options (key = default  help):\n" + "\n".join(describe(cfg_cls)))
    parser.add_argument("--config", metavar="FILE", help=config_help)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="option overrides")
    return parser
