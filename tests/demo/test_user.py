"""`vapi ablate` / `vapi demo` on a user's own stages and class folders: an end-to-end study that leaves the stage
folders untouched, content keys, and one one-line error per bad input."""
import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest

from vapi.cli import main
from vapi.config import load_config
from vapi.data.procedural import ProceduralShapes, save_as_image_folder
from vapi.demo.run import DemoConfig, stage_keys

from test_run import TINY

CLASSES = 3  # not the procedural data's 10: the class count must come from the data


def tiny(stage: str) -> list[str]:
    """TINY's options of one stage, as `vapi pretrain STAGE` overrides, with a hold-out the tiny folders allow."""
    return [o[len(stage) + 1:] for o in TINY if o.startswith(stage + ".")] + ["image_size=16", "val_size=12"]


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """A 3-class class-folder dataset (train / held out) and stages `vapi pretrain` built on it."""
    root = tmp_path_factory.mktemp("user")
    train = save_as_image_folder(ProceduralShapes(60, 16, seed=5, num_classes=CLASSES), root / "train")
    test = save_as_image_folder(ProceduralShapes(45, 16, seed=6, num_classes=CLASSES), root / "test")
    for stage, name in (("tokenizer", "tokenizer"), ("prior", "prior"), ("features", "evalnet"),
                        ("features", "perceptual")):
        extra = ["--tokenizer", str(root / "tokenizer")] if stage == "prior" else []
        assert main(["pretrain", stage, "--data", train, "--out", str(root / name), *extra,
                     *tiny("evalnet" if stage == "features" else stage),
                     *(["widths=[8,16]"] if name == "perceptual" else [])]) == 0
    return {"root": root, "train": train, "test": test,
            **{f"{name}_path": str(root / name) for name in ("tokenizer", "prior", "evalnet", "perceptual")}}


def paths(user: dict, **change) -> list[str]:
    given = {k: user[k] for k in ("tokenizer_path", "prior_path", "evalnet_path", "perceptual_path")}
    given.update({"data.root": user["train"], "data.test_root": user["test"]}, **change)
    return [f"{k}={v}" for k, v in given.items()]


def fingerprint(folder: str) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def ablate(tmp_path, *options: str) -> int:
    return main(["ablate", "main", "--rows", "base,control,vapi", *TINY, "seeds=1", "eval_seeds=1", "threads=1",
                 "post.eval_steps=0", f"out_dir={tmp_path / 'runs'}", f"cache_dir={tmp_path / 'cache'}", *options])


@pytest.mark.parametrize("jobs", [1, 2])
def test_ablate_runs_on_the_users_stages_and_data(user, tmp_path, jobs):
    stage_dirs = [user[f"{n}_path"] for n in ("tokenizer", "prior", "evalnet", "perceptual")]
    before = {d: fingerprint(d) for d in stage_dirs}
    assert ablate(tmp_path, *paths(user), f"jobs={jobs}", f"threads={jobs}") == 0  # 2: spawned job processes
    assert {d: fingerprint(d) for d in stage_dirs} == before  # used as given: nothing written into them
    run = next((tmp_path / "runs").glob("ablate-main-*"))
    report = (run / "report.md").read_text()
    assert f"{CLASSES} classes" in report and user["train"] in report
    for d in stage_dirs:
        assert f"the user's `{d}`" in report
    saved = json.loads((run / "results.json").read_text())
    assert set(saved["results"]) == {"base", "control", "vapi"}
    for runs in saved["results"].values():
        for r in runs:
            assert all(math.isfinite(v) for v in r.values()), r
    assert saved["cached"] == dict.fromkeys(("tokenizer", "prior", "evalnet", "perceptual"), "user")
    assert not any((tmp_path / "cache").glob("*-*"))  # no stage was built or cached
    (run / "report.md").unlink()  # written again from results.json, with the user's data and stages
    assert main(["ablate", "main", "--report", str(run)]) == 0
    assert f"the user's `{user['prior_path']}`" in (run / "report.md").read_text()


def test_a_job_process_reuses_its_parents_data_identity_and_keys(user, tmp_path, monkeypatch):
    import vapi.demo.run as run
    cfg = load_config(DemoConfig, None, [*TINY, *paths(user), f"cache_dir={tmp_path / 'cache'}"])
    known = (run.data_identity(cfg.data), stage_keys(cfg))

    def rehash(*args):
        raise AssertionError("the user's folders were hashed again")

    monkeypatch.setattr(run, "data_identity", rehash)
    monkeypatch.setattr(run, "stage_keys", rehash)
    setup = run.prepare(cfg, known)
    assert (setup.data_id, setup.keys) == known


def test_a_user_stage_key_is_its_files_content(user, tmp_path):
    """A changed weight file changes the user tokenizer's key, and the key of the prior the demo builds on it."""
    tok = tmp_path / "tok"
    shutil.copytree(user["tokenizer_path"], tok)
    cfg = load_config(DemoConfig, overrides=[*TINY, f"tokenizer_path={tok}"])
    before = stage_keys(cfg)
    weights = tok / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    after = stage_keys(cfg)
    assert after["tokenizer"] != before["tokenizer"] and after["prior"] != before["prior"]
    assert after["evalnet"] == before["evalnet"]


def fails(tmp_path, capsys, *options: str) -> str:
    """The one-line error `vapi ablate` gives for `options`."""
    assert ablate(tmp_path, *options) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_a_missing_stage_folder(user, tmp_path, capsys):
    assert "tokenizer_path" in fails(tmp_path, capsys, *paths(user, tokenizer_path=str(tmp_path / "nope")))


def test_a_folder_that_is_not_a_model_folder(user, tmp_path, capsys):
    err = fails(tmp_path, capsys, *paths(user, evalnet_path=user["train"]))
    assert "evalnet_path" in err and "not a vapi model folder" in err


def test_a_gpt_given_as_tokenizer(user, tmp_path, capsys):
    err = fails(tmp_path, capsys, *paths(user, tokenizer_path=user["prior_path"]))
    assert "tokenizer_path" in err and "llamagen_gpt" in err


def test_a_tokenizer_given_as_evaluation_network(user, tmp_path, capsys):
    assert "not a classifier" in fails(tmp_path, capsys, *paths(user, evalnet_path=user["tokenizer_path"]))


def test_a_prior_without_its_tokenizer(user, tmp_path, capsys):
    assert "prior_path needs tokenizer_path" in fails(tmp_path, capsys, f"prior_path={user['prior_path']}")


def test_a_prior_on_another_tokenizer(user, tmp_path, capsys):
    other = tmp_path / "other_tokenizer"
    shutil.copytree(user["tokenizer_path"], other)
    meta = json.loads((other / "config.json").read_text())
    meta["config"]["codebook_size"] = 64
    (other / "config.json").write_text(json.dumps(meta))
    assert "give the tokenizer the prior was trained on" in fails(tmp_path, capsys,
                                                                  *paths(user, tokenizer_path=str(other)))


def test_a_text_to_image_prior(user, tmp_path, capsys):
    t2i = tmp_path / "t2i"
    shutil.copytree(user["prior_path"], t2i)
    meta = json.loads((t2i / "config.json").read_text())
    meta["config"]["model_type"] = "t2i"
    (t2i / "config.json").write_text(json.dumps(meta))
    assert "class-conditional (c2i)" in fails(tmp_path, capsys, *paths(user, prior_path=str(t2i)))


def test_an_image_size_the_prior_does_not_generate(user, tmp_path, capsys):
    assert "set data.image_size=16" in fails(tmp_path, capsys, *paths(user), "data.image_size=32")


def test_an_image_size_the_tokenizer_cannot_split(user, tmp_path, capsys):
    assert "multiple of 4" in fails(tmp_path, capsys, *paths(user, prior_path=""), "data.image_size=18")


def test_a_built_prior_at_another_size_than_the_data(user, tmp_path, capsys):
    assert "set prior.image_size=16" in fails(tmp_path, capsys, *paths(user, prior_path=""), "prior.image_size=32")


def test_a_prior_with_other_classes_than_the_data(user, tmp_path, capsys):
    """The user's 3-class prior on the procedural data's 10 classes."""
    err = fails(tmp_path, capsys, f"tokenizer_path={user['tokenizer_path']}", f"prior_path={user['prior_path']}")
    assert "knows 3 classes but the data has 10" in err


def test_an_evaluation_network_with_other_classes_than_the_data(user, tmp_path, capsys):
    assert "classifies 3 classes but the data has 10" in fails(tmp_path, capsys,
                                                                f"evalnet_path={user['evalnet_path']}")


def test_an_empty_data_folder(user, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    err = fails(tmp_path, capsys, *paths(user, **{"data.root": str(tmp_path / "empty")}))
    assert err.startswith("vapi ablate: error: data.root:") and "no class subfolders" in err


def test_a_missing_data_folder(user, tmp_path, capsys):
    err = fails(tmp_path, capsys, *paths(user, **{"data.test_root": str(tmp_path / "nope")}))
    assert "data.test_root:" in err and "does not exist" in err


def test_training_images_without_held_out_images(user, tmp_path, capsys):
    assert "root and test_root go together" in fails(tmp_path, capsys, f"data.root={user['train']}")


def test_held_out_classes_that_are_not_the_training_classes(user, tmp_path, capsys):
    test = tmp_path / "test"
    shutil.copytree(user["test"], test)
    first = sorted(test.iterdir())[0]
    first.rename(test / "zz_other")
    err = fails(tmp_path, capsys, *paths(user, **{"data.test_root": str(test)}))
    assert "in only one of them: 00_disk_red, zz_other" in err


def test_the_stages_left_empty_are_built_from_the_users_data(user, tmp_path):
    """The user's tokenizer and class folders: the demo builds the prior and both networks on them, at the data's
    3 classes, into its cache, and writes nothing into the user's tokenizer."""
    from vapi.demo.run import prepare

    before = fingerprint(user["tokenizer_path"])
    cfg = load_config(DemoConfig, overrides=[*TINY, *paths(user, prior_path="", evalnet_path="", perceptual_path=""),
                                             "threads=1", f"cache_dir={tmp_path / 'cache'}"])
    setup = prepare(cfg)
    assert fingerprint(user["tokenizer_path"]) == before
    assert setup.stages.cached == {"tokenizer": "user", "prior": "", "evalnet": "", "perceptual": ""}
    for name in ("prior", "evalnet", "perceptual"):
        assert setup.dirs[name] == tmp_path / "cache" / f"{name}-{setup.keys[name]}"
    assert setup.base.config.num_classes == CLASSES and setup.evaluator.num_classes == CLASSES
    assert setup.evaluator.grid(setup.base, per_class=1).shape[0] == CLASSES


def test_the_first_images_of_both_class_folders_mix_the_classes(user):
    from vapi.demo.run import DemoData
    from vapi.demo.user import user_data
    train, test = user_data(DemoData(root=user["train"], test_root=user["test"], image_size=16))
    for folder in (train, test):  # the evaluator's first N (the tokenizer's floor, validation) cover the classes
        assert set(folder.labels[:12]) == set(range(CLASSES))
        assert sorted(folder.labels) == sorted(label for _, label in type(folder)(folder.root, 16).samples)
