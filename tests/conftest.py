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
