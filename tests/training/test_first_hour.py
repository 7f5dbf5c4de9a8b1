"""What a new user sees during and after `vapi train` (issue 14): free-running grids at step 0 and N, the run
summary, the final checkpoint path, `latest`, `vapi report`, generation metrics, class maps, resolution checks."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tiny import tiny_config, tiny_policy, tiny_tokenizer
from vapi.cli import main
from vapi.data.procedural import ProceduralShapes, save_as_image_folder
from vapi.models.weights_io import export_llamagen, save_pretrained
from vapi.training.trainer import Trainer


@pytest.fixture
def setup(tmp_path):
    data = save_as_image_folder(ProceduralShapes(16, image_size=16, seed=1), tmp_path / "images")
    save_pretrained(tiny_policy(), tmp_path / "gpt")
    save_pretrained(tiny_tokenizer(), tmp_path / "vq")
    args = [f"--model.gpt={tmp_path / 'gpt'}", "--model.vq", str(tmp_path / "vq"), f"data.path={data}",
            "objective.num_generations=4", "train.per_device_batch_size=4", "train.micro_batch_size=16",
            "reward.lpips=0", "--train.progress", "false", "train.image_steps=0", "train.save_steps=0",
            "--learning_rate", "3e-2", "train.sample_steps=2", "train.sample_num=3", "train.sample_cfg_scale=2",
            f"train.output_dir={tmp_path / 'run'}"]
    return tmp_path, args


def test_tiny_run_shows_grids_summary_checkpoint_and_report(setup, capsys):
    tmp_path, args = setup
    assert main(["train", *args, "train.max_steps=2", "train.report_to=tensorboard"]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "run"
    assert "run summary:" in out and "token_grid=4x4" in out
    assert f"final checkpoint: {run / 'checkpoints' / 'step-000002' / 'model'}" in out
    summary = json.loads((run / "run_summary.json").read_text())
    assert summary["resolution"] == {"image_size": 16, "token_grid": "4x4", "image_tokens": 16}
    assert summary["batch"]["sequences_per_step"] == 16 and summary["dataset"]["class_folders"] == 10
    assert summary["generator"]["vocabulary"] == 32 and summary["notes"] == []
    # free-running grids: 2 rows (unguided, guided) × 3 conditions at the model's 16 px, same seed, different steps
    grids = sorted((run / "samples").glob("step-*.png"))
    assert [g.name for g in grids] == ["step-000000.png", "step-000002.png"]
    first, last = (np.asarray(Image.open(g)).astype(int) for g in grids)
    assert first.shape == (2 + 2 * 18, 2 + 3 * 18, 3)
    assert np.abs(first - last).mean() > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard")).Reload()
    assert [e.step for e in events.Images("samples/free_running")] == [0, 2]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"learning_rate", "rewards/mse/mean", "step_time", "num_tokens", "frac_reward_zero_std"} <= set(rows[-1])
    assert main(["report", str(run)]) == 0
    report = (run / "report" / "report.md").read_text()
    assert "| reward |" in report and "samples/step-000002.png" in report
    assert Image.open(run / "report" / "curves.png").size[0] > 400


def test_generation_metrics_with_a_classifier_folder(tmp_path, shapes16):
    from vapi.models.classifier import Classifier, ClassifierConfig

    save_pretrained(Classifier(ClassifierConfig(num_classes=10, widths=[4, 8], blocks=1)), tmp_path / "clf")
    cfg = tiny_config(tmp_path, max_steps=1, sample_steps=1, gen_metrics_steps=1, gen_metrics_samples=8,
                      gen_metrics_features=str(tmp_path / "clf"), sample_cfg_scale=1.0)
    Trainer(cfg, tiny_policy(), tiny_tokenizer(), shapes16).train()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1] and all("gen/fid" in r and "gen/accuracy" in r for r in rows)
    grid = Image.open(tmp_path / "run" / "samples" / "step-000001.png")
    assert grid.size == (2 + 8 * 18, 2 + 18)  # unguided row only


def test_class_map_and_fewer_classes_warning(setup, capsys):
    tmp_path, args = setup
    images = tmp_path / "images"
    for extra in sorted(images.iterdir())[3:]:  # keep 3 of the 10 class folders
        for f in extra.iterdir():
            f.unlink()
        extra.rmdir()
    kept = sorted(p.name for p in images.iterdir())
    assert main(["train", *args, "train.max_steps=1", "train.sample_steps=0"]) == 0
    captured = capsys.readouterr()
    assert "warning: the data has 3 class folders but the generator knows 10" in captured.err
    (tmp_path / "map.json").write_text(json.dumps({kept[0]: 7, kept[1]: 2, kept[2]: 9}))
    assert main(["train", *args, "train.max_steps=1", "train.sample_steps=0", f"data.class_map={tmp_path / 'map.json'}",
                 f"train.output_dir={tmp_path / 'run2'}"]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err and f"{kept[0]} → 7" in captured.out
    (tmp_path / "map.txt").write_text(f"{kept[0]} a\n{kept[1]} b\n")
    assert main(["train", *args, f"data.class_map={tmp_path / 'map.txt'}"]) == 2
    assert kept[2] in capsys.readouterr().err  # a folder the map does not name


def test_class_map_txt_gives_line_numbers(tmp_path):
    from vapi.data.build import DataConfig, build_dataset

    data = save_as_image_folder(ProceduralShapes(12, image_size=8, seed=0, num_classes=2), tmp_path / "images")
    names = sorted(p.name for p in Path(data).iterdir())
    (tmp_path / "synsets.txt").write_text("".join(f"n0{i} filler, words\n" for i in range(5))
                                          + f"{names[1]} x\n{names[0]} y\n")
    ds = build_dataset(DataConfig(path=str(data), image_size=8, class_map=str(tmp_path / "synsets.txt")))
    assert sorted(set(ds.labels)) == [5, 6] and ds.num_classes == 7
    assert {ds[i][1] for i in range(len(ds))} == {5, 6}


def test_image_size_is_never_guessed_for_training(setup, capsys):
    tmp_path, args = setup
    from vapi.models.weights_io import load_gpt

    export_llamagen(load_gpt(tmp_path / "gpt"), tmp_path / "my_finetune.pt")
    args = [a for a in args if "model.gpt" not in a] + [f"model.gpt={tmp_path / 'my_finetune.pt'}"]
    assert main(["train", *args, "train.max_steps=1"]) == 2
    assert "model.image_size is required" in capsys.readouterr().err
