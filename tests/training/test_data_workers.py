"""DataLoader workers: the same batches in the same order as in-process loading, and an exact resume."""
import torch

from vapi.data.procedural import ProceduralShapes
from vapi.training.state import BatchStream


def batches(stream, n):
    return [next(stream) for _ in range(n)]


def test_workers_give_the_same_batches_and_resume_exactly():
    data = ProceduralShapes(24, image_size=8, seed=0)
    plain = batches(BatchStream(data, 4, seed=3), 8)  # 6 batches per epoch: crosses an epoch boundary
    workers = BatchStream(data, 4, seed=3, num_workers=2)
    first = batches(workers, 3)
    state = workers.state_dict()  # the position counts batches handed out, not the workers' prefetch
    workers.close()
    resumed = BatchStream(data, 4, seed=3, num_workers=2)
    resumed.load_state_dict(state)
    rest = batches(resumed, 5)
    resumed.close()
    for (x, y), (x2, y2) in zip(plain, first + rest):
        assert torch.equal(x, x2) and torch.equal(y, y2)
