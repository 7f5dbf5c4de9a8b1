"""`vapi demo`: the embedded end-to-end VA-π demo on a CPU (what `make demo` runs)."""
from __future__ import annotations


from vapi.commands import add_config_parser
from vapi.config import load_config


def add_parser(sub) -> None:
    from vapi.demo.run import DemoConfig

    p = add_config_parser(
        sub, "demo", DemoConfig,
        help="the main study's core on the embedded shapes: base, matched control, CE fine-tune, VA-π, β = 0, "
             "with intervals",
        description="The whole VA-π story on a CPU with nothing to download. Cached stages are reused; "
                    "options: --config FILE (YAML) then key=value overrides. Your own stages and class folders: "
                    "tokenizer_path, prior_path, evalnet_path, perceptual_path, data.root, data.test_root.",
        config_help="YAML file of demo options")
    p.add_argument("--seeds", type=int, help="post-training seeds per row (intervals are over seeds)")
    p.add_argument("--rebuild", action="store_true", help="train the pretrained stages from their config instead "
                                                          "of using the shipped ones (assets/demo) or the cache")
    p.set_defaults(func=run)


def run(args) -> int:
    from vapi.demo.ablate import run_study
    from vapi.demo.run import DemoConfig

    cfg = load_config(DemoConfig, args.config, args.overrides)
    if args.seeds:
        cfg.seeds = args.seeds
    if args.rebuild:
        cfg.rebuild = True
    report = run_study(cfg, "main", rows=cfg.variants, folder_prefix="demo")  # the main study's core rows
    print((report.parent / "table.md").read_text() if (report.parent / "table.md").exists() else "")
    print(f"report: {report}")
    return 0
