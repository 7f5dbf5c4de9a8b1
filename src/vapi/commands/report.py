"""`vapi report RUN_DIR`: markdown summary + PNG curves of a `vapi train` run (finished or still running).

    vapi report runs/vapi                 # writes runs/vapi/report/report.md and curves.png
"""
from __future__ import annotations

import argparse

from vapi.commands import HelpFormatter


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="markdown summary and PNG curves of a training run",
                              description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("run_dir", help="a vapi train output_dir (holds metrics.jsonl)")
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR/report)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from vapi.training.report import write_report

    path = write_report(args.run_dir, args.out)
    print(f"wrote {path} and {path.parent / 'curves.png'}")
    return 0
