"""vapi.eval.generation: held-out teacher-forced CE, token accuracy and entropy, computed in batches."""
import torch
import torch.nn.functional as F

from tiny import tiny_policy
from vapi.eval.generation import teacher_forced_eval


def test_teacher_forced_eval_matches_the_whole_batch_and_restores_the_mode():
    policy = tiny_policy().train()
    tokens = torch.randint(0, 32, (7, 16), generator=torch.Generator().manual_seed(0))  # [N, T]
    labels = torch.arange(7) % 10  # [N]
    out = teacher_forced_eval(policy, tokens, labels, batch_size=3)
    assert policy.training
    with torch.no_grad():
        logp = policy.eval().teacher_forced_logits(labels, tokens).log_softmax(-1)  # [N, T, V]
    assert abs(out["val_ce"] - F.nll_loss(logp.flatten(0, 1), tokens.flatten()).item()) < 1e-5
    assert abs(out["val_entropy"] - (-(logp.exp() * logp).sum(-1).mean().item())) < 1e-5
    assert out["val_token_acc"] == (logp.argmax(-1) == tokens).sum().item() / tokens.numel()
