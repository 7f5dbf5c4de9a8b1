"""The embedded CPU demo and `vapi ablate`: a recipe built from vapi's components, not one of them.

    run           DemoConfig, the cached stages (tokenizer, prior, evaluation and perceptual nets), the Evaluator,
                  prepare() and post_train(): what every study row shares
    user          a user's own stages and class folders in place of the demo's: checks, content keys, loading
    ablate        the studies (rows of overrides) and run_study(), which `vapi demo` and `vapi ablate` call
    ablate_report a study's report: bootstrap intervals over seeds, the paper's directions, plots, curves
    assets        the stages shipped in assets/demo: `python -m vapi.demo.assets ship|verify`

It sits beside `commands`, above `pretrain`, `training` and `eval`: nothing below imports it.
"""
