"""vapi: VA-π post-training for autoregressive image generators (`vapi --help` for the command line).

The library's front door, the same names the CLI is built on:

    RunConfig       every option of a run; the defaults are the paper's values
    load_config     dataclass defaults < YAML file (or a shipped config's name) < `a.b=c` overrides, schema-checked
    train(cfg)      build the models and data `cfg` names, post-train, return the last step's metrics
    build_policy    a generator family's models by role: PolicyBundle(policy, tokenizer, prompt_encoder, image_size)
    Method          the interface a post-training method implements (vapi.methods: vapi, ce, ste, tokenizer, grpo)
    RewardTerm      the protocol a reward term implements: (images, targets | None, condition) → [N], higher is better

A run, given a YAML config (`config_file`: e.g. `vapi/configs/llamagen_c2i_b_256.yaml` plus the model and data
paths; the test of this example passes one naming tiny models and a procedural image folder):

    >>> import vapi
    >>> cfg = vapi.load_config(vapi.RunConfig, config_file, ["train.max_steps=2"])
    >>> bundle = vapi.build_policy(cfg.model.kind, cfg.model.gpt, cfg.model.vq)
    >>> bundle.prompt_encoder is None, bundle.image_size     # class-conditional, 16 px
    (True, 16)
    >>> metrics = vapi.train(cfg)  # doctest: +ELLIPSIS
    run summary:
    ...
    >>> from pathlib import Path
    >>> (Path(cfg.train.output_dir) / "checkpoints" / "latest").read_text().strip()   # the last checkpoint
    'step-000002'

Names are imported on first use, so `import vapi` stays cheap for the command line.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "RunConfig": "vapi.training.config",
    "load_config": "vapi.config",
    "train": "vapi.training.run",
    "build_policy": "vapi.models.build",
    "PolicyBundle": "vapi.models.protocols",
    "Method": "vapi.methods.base",
    "RewardTerm": "vapi.objectives.rewards",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vapi' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
