"""The fused log-softmax gather: values and gradients equal the plain computation, chunked or not, shared rows too."""
import pytest
import torch
import torch.nn.functional as F

from vapi.objectives import gather_logprobs, token_entropy
from vapi.objectives import logprobs as lp


def _reference(logits, tokens, rows, temperature):
    expanded = logits[rows]  # [N, T, V]: the copy the fused path avoids
    return F.log_softmax(expanded.float() / temperature, -1).gather(-1, tokens[..., None])[..., 0]


def test_hand_computed_value():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]]))  # [1, 2, 3]
    got = gather_logprobs(logits, torch.tensor([[0, 2], [1, 0]]), torch.tensor([0, 0]))
    assert torch.allclose(got, torch.log(torch.tensor([[0.5, 0.8], [0.25, 0.1]])))


@pytest.mark.parametrize("chunk", [lp.CHUNK_ELEMENTS, 7])  # 7 elements: one position per chunk
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_matches_log_softmax_with_shared_rows(monkeypatch, chunk, temperature):
    monkeypatch.setattr(lp, "CHUNK_ELEMENTS", chunk)
    g = torch.Generator().manual_seed(0)
    b, G, T, V = 3, 4, 5, 11
    logits = (torch.randn(b, T, V, generator=g) * 3).requires_grad_(True)
    rows = torch.arange(b).repeat_interleave(G)
    tokens = torch.randint(0, V, (b * G, T), generator=g)
    weights = torch.randn(b * G, T, generator=g)
    got = gather_logprobs(logits, tokens, rows, temperature)
    (grad,) = torch.autograd.grad((got * weights).sum(), logits)
    ref_logits = logits.detach().clone().requires_grad_(True)
    want = _reference(ref_logits, tokens, rows, temperature)
    (want_grad,) = torch.autograd.grad((want * weights).sum(), ref_logits)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(grad, want_grad, atol=1e-6)


def test_bf16_logits_give_a_bf16_gradient():
    logits = torch.randn(2, 3, 7).bfloat16().requires_grad_(True)
    out = gather_logprobs(logits, torch.zeros(2, 3, dtype=torch.long))
    assert out.dtype == torch.float32
    out.sum().backward()
    assert logits.grad.dtype == torch.bfloat16


def test_entropy_in_chunks(monkeypatch):
    logits = torch.randn(2, 5, 9, generator=torch.Generator().manual_seed(1))
    logp = F.log_softmax(logits / 0.5, -1)
    want = -(logp.exp() * logp).sum(-1).mean()
    monkeypatch.setattr(lp, "CHUNK_ELEMENTS", 9)
    assert torch.allclose(token_entropy(logits, 0.5), want, atol=1e-6)
    assert torch.allclose(token_entropy(torch.zeros(1, 2, 4)), torch.log(torch.tensor(4.0)))
