"""GenEval folder export (layout, verbatim metadata, resume) and the metrics report."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vapi.eval.geneval import export_geneval
from vapi.eval.metrics import feature_statistics
from vapi.eval.npz import ReferenceStats
from vapi.eval.report import evaluate, format_table, write_json

PROMPTS = [
    '{"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}',
    '{"tag": "counting", "include": [{"class": "cat", "count": 2}], "exclude": [], "prompt": "a photo of two cats"}',
]


class FakeGenerator:
    def __init__(self):
        self.calls = []

    def __call__(self, prompts, n):
        self.calls.append(list(prompts))
        return torch.full((len(prompts) * n, 3, 16, 12), 200, dtype=torch.uint8)  # [P * n, 3, H, W]


def test_geneval_layout_and_resume(tmp_path):
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text(PROMPTS[0] + "\n\n" + PROMPTS[1] + "\n")  # a blank line does not take an index
    out = tmp_path / "geneval"
    gen = FakeGenerator()
    assert export_geneval(jsonl, out, gen, n_per_prompt=3, progress=False) == 2
    assert sorted(p.name for p in out.iterdir()) == ["00000", "00001"]
    for i, line in enumerate(PROMPTS):
        assert json.loads((out / f"{i:05d}" / "metadata.jsonl").read_text()) == json.loads(line)
        pngs = sorted(p.name for p in (out / f"{i:05d}" / "samples").iterdir())
        assert pngs == ["0000.png", "0001.png", "0002.png"]
        with Image.open(out / f"{i:05d}" / "samples" / "0000.png") as im:
            assert im.size == (12, 16) and im.mode == "RGB"
    assert gen.calls == [["a photo of a bench"], ["a photo of two cats"]]

    assert export_geneval(jsonl, out, gen, n_per_prompt=3, progress=False) == 0  # complete: nothing regenerated
    (out / "00001" / "samples" / "0002.png").unlink()
    assert export_geneval(jsonl, out, gen, n_per_prompt=3, progress=False) == 1
    assert gen.calls[-1] == ["a photo of two cats"]


def test_geneval_rejects_wrong_generator_shape(tmp_path):
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text(PROMPTS[0] + "\n")
    with pytest.raises(ValueError, match="generate"):
        export_geneval(jsonl, tmp_path / "out", lambda p, n: torch.zeros(1, 3, 4, 4), n_per_prompt=2, progress=False)


def test_evaluate_report(tmp_path):
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((60, 8))  # [N, D]
    logits = rng.standard_normal((60, 5))  # [N, C]
    mu, sigma = feature_statistics(feats)
    ref = ReferenceStats(mu, sigma, features=feats, mu_s=mu, sigma_s=sigma)
    res = evaluate(feats, ref, sample_logits=logits, sample_labels=logits.argmax(1), sample_spatial=feats)
    assert set(res) == {"num_samples", "fid", "is", "is_std", "accuracy", "precision", "recall", "sfid"}
    assert abs(res["fid"]) < 1e-6 and abs(res["sfid"]) < 1e-6
    assert res["precision"] == res["recall"] == res["accuracy"] == 1.0
    table = format_table(res)
    assert table.splitlines()[0].split() == ["metric", "value"] and "precision" in table
    path = write_json(res, tmp_path / "eval.json")
    assert json.loads(path.read_text()) == pytest.approx(res)
    only_fid = evaluate(feats, ReferenceStats(mu, sigma))
    assert set(only_fid) == {"num_samples", "fid"}
