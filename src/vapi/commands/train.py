"""`vapi train --config FILE [key=value ...]`: VA-π post-training of a generator on a folder of images.

The same command runs on N GPUs: `torchrun --nproc_per_node N -m vapi train ... train.parallel=ddp|fsdp`."""
from __future__ import annotations

import os

from vapi.commands import add_config_parser
from vapi.config import load_config
from vapi.training.config import RunConfig


def add_parser(sub) -> None:
    p = add_config_parser(
        sub, "train", RunConfig, help="post-train a generator with VA-π",
        description="VA-π post-training. Options come from the dataclass defaults (the paper's values), then "
                    "--config FILE (YAML), then key=value overrides (e.g. optim.learning_rate=1e-5).",
        config_help="YAML file of options (the shipped ones: llamagen_c2i_b_256, llamagen_c2i_xl_384, "
                    "llamagen_c2i_xxl_384, llamagen_t2i_xl_256, janus_pro_1b)")
    p.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="continue from the latest checkpoint in train.output_dir (a fresh start, with a note, when "
                        "there is none; --resume=must refuses then), or from the given checkpoint or run folder. "
                        "Without it, an output_dir that holds checkpoints is refused (see train.overwrite)")
    p.set_defaults(func=run)


def run(args) -> int:
    from vapi.training.distributed import init_distributed
    from vapi.training.run import train

    if args.resume and "=" in args.resume and not os.path.exists(args.resume):
        # `--resume key=value`: argparse gave the override to --resume's optional argument
        args.overrides, args.resume = [args.resume, *args.overrides], "auto"
    cfg = load_config(RunConfig, args.config, args.overrides)
    dist = init_distributed(cfg.train.device)  # `python -m vapi` leaves the process group at exit
    metrics = train(cfg, resume=args.resume or False, dist=dist)
    if dist.is_main:
        from vapi.training.resolve import latest_step_dir

        print(f"done: {cfg.train.max_steps} steps in {cfg.train.output_dir}; last reward "
              f"{metrics.get('reward', float('nan')):.4f}")
        final = latest_step_dir(cfg.train.output_dir)
        if final is not None:
            if cfg.objective.name == "tokenizer":  # the run's model folder is the post-trained VQ
                print(f"final checkpoint: {final / 'model'} (a tokenizer: vapi sample --gpt {cfg.model.gpt} "
                      f"--vq {final / 'model'} ...)")
            else:
                print(f"final checkpoint: {final / 'model'} (vapi sample --gpt {cfg.train.output_dir} ...; "
                      f"vapi convert {cfg.train.output_dir} model.pt for LlamaGen)")
    return 0
