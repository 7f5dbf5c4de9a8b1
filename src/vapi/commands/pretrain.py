"""`vapi pretrain {tokenizer,prior,features}`: train the small models a demo (or a small custom dataset) needs.

    vapi pretrain tokenizer --out runs/tok --procedural 30000 steps=600 ch_mult=[1,2,2]
    vapi pretrain prior --tokenizer runs/tok --out runs/prior --procedural 30000
    vapi pretrain features --out runs/feat --data path/to/imagefolder arch=resnet

Options: the stage's dataclass defaults < `--config FILE` (YAML) < `key=value` overrides; the resolved options are
written to `OUT/config.yaml` (reusable as `--config`). `vapi pretrain STAGE --help` lists every option.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from vapi.commands import add_config_parser
from vapi.commands.model_args import non_negative_int
from vapi.config import load_config, save_config

# stage → (module, config class name, function name, one-line help)
STAGES = {
    "tokenizer": ("vapi.pretrain.tokenizer", "TokenizerPretrainConfig", "pretrain_tokenizer",
                  "train a small LlamaGen VQ tokenizer"),
    "prior": ("vapi.pretrain.prior", "PriorPretrainConfig", "pretrain_prior",
              "train a class-conditional LlamaGen GPT on a tokenizer's codes"),
    "features": ("vapi.pretrain.features", "FeaturesPretrainConfig", "pretrain_features",
                 "train a small CNN classifier used as the evaluation feature network"),
}


def _stage(name: str):
    import importlib

    module, cfg_name, fn_name, _ = STAGES[name]
    mod = importlib.import_module(module)
    return getattr(mod, cfg_name), getattr(mod, fn_name)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("pretrain", help="train a small tokenizer, prior or evaluation net",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    stages = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name, (_, _, _, help_) in STAGES.items():
        cfg_cls, _ = _stage(name)
        sub = add_config_parser(stages, name, cfg_cls, help=help_, description=help_)
        sub.add_argument("--out", required=True, metavar="DIR", help="output folder (model, metrics.json, "
                                                                     "config.yaml); replaced if it exists")
        data = sub.add_mutually_exclusive_group(required=True)
        data.add_argument("--data", metavar="PATH", help="ImageFolder tree or HF save_to_disk folder")
        data.add_argument("--procedural", type=int, metavar="N", help="use N images of the embedded procedural "
                                                                       "shapes dataset")
        sub.add_argument("--procedural-seed", type=int, default=0, help="seed of the procedural dataset")
        if name == "tokenizer":
            sub.add_argument("--checkpoint-every", type=non_negative_int, default=0, metavar="N",
                             help="save the training state every N steps to OUT.partial.pt; the same command run "
                                  "again resumes there (0 = never)")
        if name == "prior":
            sub.add_argument("--tokenizer", required=True, metavar="DIR", help="tokenizer folder "
                                                                               "(from `vapi pretrain tokenizer`)")
        sub.set_defaults(func=run)


def build_data(args, image_size: int):
    """The dataset the flags name, rendered / center-cropped at `image_size`."""
    from vapi.data import DataConfig, ProceduralShapes, build_dataset

    if args.procedural is not None:
        return ProceduralShapes(args.procedural, image_size, seed=args.procedural_seed)
    return build_dataset(DataConfig(path=args.data, image_size=image_size))


def run(args) -> int:
    cfg_cls, fn = _stage(args.stage)
    cfg = load_config(cfg_cls, args.config, args.overrides)
    dataset = build_data(args, cfg.image_size)
    if args.stage == "prior":
        fn(cfg, args.tokenizer, dataset, args.out)
    elif args.stage == "tokenizer":
        fn(cfg, dataset, args.out, checkpoint_every=args.checkpoint_every)
    else:
        fn(cfg, dataset, args.out)
    save_config(cfg, Path(args.out) / "config.yaml")
    return 0
