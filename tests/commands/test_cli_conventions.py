"""TRL-style command-line habits: --key value, --key=value, did-you-mean, report_to, shipped configs, --version."""
import pytest

from vapi.cli import build_parser, main
from vapi.commands import normalize_overrides
from vapi.config import ConfigError, load_config
from vapi.training.config import RunConfig, resolve_report_to


def test_flag_styles_become_overrides():
    parser = build_parser()
    argv = ["train", "--config", "c.yaml", "--optim.learning_rate", "1e-5", "--train.max_steps=3", "a.b=c",
            "--train.progress", "--resume", "--seed", "-1"]
    assert normalize_overrides(parser, argv) == [
        "train", "--config", "c.yaml", "optim.learning_rate=1e-5", "train.max_steps=3", "a.b=c",
        "train.progress=true", "--resume", "seed=-1"]
    assert normalize_overrides(parser, ["pretrain", "prior", "--steps", "5"])[-1] == "steps=5"
    assert normalize_overrides(parser, ["sample", "--gpt", "x"]) == ["sample", "--gpt", "x"]  # not config-driven
    # a value that contains "=" is still the value; a dotted key=value after a bare flag is the next override
    assert normalize_overrides(parser, ["train", "--data.path", "/data/run=1", "--train.progress", "a.b=c"]) == [
        "train", "data.path=/data/run=1", "train.progress=true", "a.b=c"]


def test_a_parser_built_after_others_were_freed_keeps_its_own_options():
    """Each `main()` builds a new parser. Whether a subparser is config-driven must be a property of that parser: a
    registry of id()s let a freed config parser's id be reused by a later call's group parser (`pretrain`), whose
    `--out` then became the override `out=…` and `vapi pretrain features --out DIR` failed with "--out is required"
    (CI, once; a loop of 300 builds hit it 176 times)."""
    import gc

    argv = ["pretrain", "features", "--out", "d", "--procedural", "4", "steps=3"]
    for _ in range(100):
        parser = build_parser()
        assert normalize_overrides(parser, argv) == argv
        del parser
        gc.collect()


def test_flat_trl_names_and_did_you_mean():
    cfg = load_config(RunConfig, None, ["learning_rate=1e-5", "num_generations=4", "micro_batch_size=4"])
    assert cfg.optim.learning_rate == 1e-5 and cfg.objective.num_generations == 4
    for wrong, right in [("optim.lr=1", "optim.learning_rate"), ("train.learning_rate=1", "optim.learning_rate"),
                         ("train.sampel_steps=3", "train.sample_steps")]:
        with pytest.raises(ConfigError, match=f"did you mean {right}"):
            load_config(RunConfig, None, [wrong])
    with pytest.raises(ConfigError, match="counts completions; vapi's train.per_device_batch_size counts real images"):
        load_config(RunConfig, None, ["per_device_train_batch_size=2"])
    with pytest.raises(ConfigError, match="valid options of optim: learning_rate"):
        load_config(RunConfig, None, ["optim.nope=1"])


def test_shipped_configs_by_name():
    cfg = load_config(RunConfig, "llamagen_c2i_xxl_384")
    assert cfg.optim.learning_rate == 1e-6 and cfg.sequences_per_step == 128
    with pytest.raises(ConfigError, match="did you mean llamagen_c2i_xxl_384"):
        load_config(RunConfig, "llamagen_c2i_xxl_38")


def test_report_to_and_old_aliases():
    assert resolve_report_to(["tensorboard"], None, "") == ["tensorboard"]
    assert resolve_report_to(["none"], None, "") == []
    assert resolve_report_to(["all"], False, "") == ["wandb"]
    assert resolve_report_to(["tensorboard"], None, "proj") == ["tensorboard", "wandb"]
    assert load_config(RunConfig, None, ["train.tensorboard=false"]).train.report_to == []
    assert load_config(RunConfig, None, ["train.report_to=none"]).train.report_to == []
    with pytest.raises(ConfigError, match="unknown backend 'mlflow'"):
        load_config(RunConfig, None, ["train.report_to=mlflow"])


def test_missing_wandb_is_one_line(monkeypatch, tmp_path):
    import sys

    from vapi.training.logging import MetricLogger

    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb → ImportError
    with pytest.raises(ValueError, match="pip install wandb"):
        MetricLogger(tmp_path, 1, tensorboard=False, wandb_project="p", progress=False)


def test_version_and_help_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("vapi ")
    for command, shown in [("sample", "(default: 2000)"), ("eval", "(default: 64)"), ("convert", "default: from the weights")]:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert shown in capsys.readouterr().out, command


def test_sample_and_eval_flags_are_aliases_of_their_config(tmp_path):
    from vapi.commands import config_from_args

    parser = build_parser()

    def resolve(*argv):
        return config_from_args(parser.parse_args(normalize_overrides(parser, [str(a) for a in argv])))

    defaults = resolve("sample", "--gpt", "g")
    assert (defaults.gpt, defaults.sampling.cfg_scale, defaults.sampling.top_k) == ("g", 4.0, 2000)  # LlamaGen's
    (tmp_path / "s.yaml").write_text("seed: 3\nbatch_size: 16\nsampling:\n  top_k: 5\n  cfg_scale: 2.0\n")
    cfg = resolve("sample", "--config", tmp_path / "s.yaml", "--top-k", "7", "--cfg", "1.5", "batch_size=4",
                  "--sampling.top_p", "0.9", "--prompt", "a", "--prompt", "b")
    assert (cfg.seed, cfg.batch_size, cfg.sampling.top_k, cfg.sampling.cfg_scale, cfg.sampling.top_p) == \
        (3, 4, 7, 1.5, 0.9)  # defaults < YAML < the flags given < key=value
    assert cfg.prompt == ["a", "b"]
    with pytest.raises(ConfigError, match="top_k"):
        resolve("sample", "--gpt", "g", "sampling.top_k=-1")
    ev = resolve("eval", "s.npz", "--ref", "r.npz", "batch_size=8", "--random-inception")
    assert (ev.samples, ev.ref, ev.batch_size, ev.random_inception, ev.features) == ("s.npz", "r.npz", 8, True,
                                                                                     "inception")
