"""`vapi ablate STUDY`: the paper's ablation tables at demo scale (main | reward | prior | noise), with intervals."""
from __future__ import annotations

from vapi.commands import add_config_parser
from vapi.config import load_config


def add_parser(sub) -> None:
    from vapi.demo.ablate import STUDIES
    from vapi.demo.run import DemoConfig

    p = add_config_parser(
        sub, "ablate", DemoConfig,
        help="run a study (rows × seeds) on the demo's stages; writes runs/ablate-<study>-<time>/report.md",
        description="Studies: " + ", ".join(STUDIES) + ". Options are the demo's (--config FILE, then key=value); "
                    "each row overrides only what it varies. Your own stages and class folders: tokenizer_path, "
                    "prior_path, evalnet_path, perceptual_path, data.root, data.test_root.",
        config_help="YAML file of demo options", positional=("study", dict(choices=sorted(STUDIES),
                                                                           help="which table")))
    p.add_argument("--rows", help="comma list of rows to run (default: all; see --list)")
    p.add_argument("--list", action="store_true", help="print the study's rows and their overrides, then exit")
    p.add_argument("--seeds", type=int, help="post-training seeds per row")
    p.add_argument("--report", metavar="DIR", help="only write DIR/report.md again from DIR/results.json (an "
                                                   "interrupted study: the rows that finished)")
    p.add_argument("--rebuild", action="store_true", help="train the stages from their config (no shipped/cache)")
    p.set_defaults(func=run)


def run(args) -> int:
    from vapi.demo.ablate import rewrite_report, run_study, select_rows
    from vapi.demo.run import DemoConfig

    rows = [r for r in (args.rows or "").split(",") if r]
    if args.list:
        for row in select_rows(args.study, rows):
            print(f"{row.name:18s} {row.label:45s} {row.overrides if row.train else '(not trained)'}")
        return 0
    if args.report:
        report = rewrite_report(args.report)
        print((report.parent / "table.md").read_text())
        print(f"report: {report}")
        return 0
    cfg = load_config(DemoConfig, args.config, args.overrides)
    if args.seeds:
        cfg.seeds = args.seeds
    if args.rebuild:
        cfg.rebuild = True
    report = run_study(cfg, args.study, rows)
    print((report.parent / "table.md").read_text())
    print(f"report: {report}")
    return 0
