"""The one optimizer builder: both no-decay rules pick the documented parameters, and the schedule's warmup, decay and
floor are the documented numbers."""
import math

import pytest
import torch

from vapi.training.optim import OptimConfig, build_optimizer, build_scheduler


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.tok_embedding = torch.nn.Embedding(5, 4)
        self.proj = torch.nn.Linear(4, 4)
        self.norm = torch.nn.LayerNorm(4)


@pytest.mark.parametrize("rule, skipped", [("norm", {"norm.weight", "norm.bias"}),
                                           ("vectors_and_embeddings", {"tok_embedding.weight", "proj.bias",
                                                                       "norm.weight", "norm.bias"})])
def test_no_decay_rules(rule, skipped):
    net = Net()
    names = {id(p): n for n, p in net.named_parameters()}
    decay, plain = build_optimizer(net, OptimConfig(weight_decay=0.1), no_decay=rule).param_groups
    assert (decay["weight_decay"], plain["weight_decay"]) == (0.1, 0.0)
    assert {names[id(p)] for p in plain["params"]} == skipped
    assert {names[id(p)] for p in decay["params"]} == set(names.values()) - skipped


def test_cosine_schedule_warms_up_and_decays_to_its_floor():
    cfg = OptimConfig(learning_rate=1.0, lr_scheduler_type="cosine", warmup_steps=2)
    opt = build_optimizer(torch.nn.Linear(2, 2), cfg)
    sched = build_scheduler(opt, cfg, total_steps=6, final_fraction=0.1)
    lrs = []
    for _ in range(7):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:2] == [0.5, 1.0]  # (step + 1) / warmup
    assert lrs[2] == pytest.approx(1.0) and lrs[4] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert lrs[6] == pytest.approx(0.1)  # the floor at and after total_steps
