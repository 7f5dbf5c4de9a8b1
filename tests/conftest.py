import os
import sys
from pathlib import Path

import pytest
import torch

# No test may reach a model hub: tiny HF models are built in-process and saved to tmp folders.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tests import shared helpers (fixture_utils) from this folder.
sys.path.insert(0, str(Path(__file__).parent))
# Tiny models: one thread is fastest, and two fight badly on a loaded 2-core machine.
torch.set_num_threads(1)


@pytest.fixture
def shapes16():
    from vapi.data.procedural import ProceduralShapes

    return ProceduralShapes(64, image_size=16, seed=0)


@pytest.fixture
def run_cli(capsys):
    """`run_cli(*argv)`: `vapi ARGV` in this process → (exit code, stdout, stderr); arguments may be paths."""
    from vapi.cli import main

    def run(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def tiny_run(tmp_path):
    """`tiny_run(num_images, *overrides)` → `vapi train` arguments for a run of the tiny models on a procedural image
    folder, all under tmp_path (outputs in tmp_path / "run")."""
    from tiny import tiny_policy, tiny_tokenizer
    from vapi.data.procedural import ProceduralShapes, save_as_image_folder
    from vapi.models.weights_io import save_pretrained

    def make(num_images: int, *overrides: str) -> list[str]:
        data = save_as_image_folder(ProceduralShapes(num_images, image_size=16, seed=1), tmp_path / "images")
        save_pretrained(tiny_policy(), tmp_path / "gpt")
        save_pretrained(tiny_tokenizer(), tmp_path / "vq")
        return [f"model.gpt={tmp_path / 'gpt'}", f"model.vq={tmp_path / 'vq'}", f"data.path={data}",
                "objective.num_generations=4", "train.per_device_batch_size=4", "train.micro_batch_size=8",
                "reward.lpips=0", "train.progress=false", "optim.learning_rate=1e-3",
                f"train.output_dir={tmp_path / 'run'}", *overrides]

    return make


@pytest.fixture
def cli_run(tmp_path, tiny_run):
    """(tmp_path, `vapi train` arguments for a 2-step run of the tiny models, a checkpoint a step, no images)."""
    return tmp_path, tiny_run(16, "train.image_steps=0", "train.save_steps=1", "train.tensorboard=false",
                              "train.max_steps=2")


@pytest.fixture(autouse=True)
def _fail_without_fixtures(request):
    """A golden-fixture case whose parameter is MissingFixtures fails with its message (see fixture_utils)."""
    callspec = getattr(request.node, "callspec", None)
    for value in callspec.params.values() if callspec else ():
        if type(value).__name__ == "MissingFixtures":
            pytest.fail(str(value), pytrace=False)


_FIXTURE_CASES: dict[str, int] = {}


def pytest_runtest_logreport(report):
    if "fixtures" in report.keywords and (report.when == "call" or report.outcome != "passed"):
        _FIXTURE_CASES[report.outcome] = _FIXTURE_CASES.get(report.outcome, 0) + 1


def pytest_terminal_summary(terminalreporter):
    if _FIXTURE_CASES:
        from fixture_utils import fixtures_dir

        counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(_FIXTURE_CASES.items()))
        terminalreporter.write_line(f"golden-fixture cases: {counts} (fixtures under {fixtures_dir()})")
