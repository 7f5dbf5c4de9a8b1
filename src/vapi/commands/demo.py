"""`vapi demo`: the embedded end-to-end VA-π demo on a CPU (what `make demo` runs)."""
from __future__ import annotations


from vapi.commands import add_config_parser
from vapi.config import load_config


def add_parser(sub) -> None:
    from vapi.demo import DemoConfig

    p = add_config_parser(
        sub, "demo", DemoConfig,
        help="train small models on procedural shapes, post-train with VA-π, evaluate, write a report",
        description="The whole VA-π story on a CPU with nothing to download. Cached stages are reused; "
                    "options: --config FILE (YAML) then key=value overrides.",
        config_help="YAML file of demo options")
    p.add_argument("--seeds", type=int, help="post-training seeds (reports mean ± spread); default 1")
    p.set_defaults(func=run)


def run(args) -> int:
    from vapi.demo import DemoConfig, run_demo

    cfg = load_config(DemoConfig, args.config, args.overrides)
    if args.seeds:
        cfg.seeds = args.seeds
    report = run_demo(cfg)
    print((report.parent / "table.md").read_text() if (report.parent / "table.md").exists() else "")
    print(f"report: {report}")
    return 0
