"""STE relaxation: the forward image is the tokenizer's decode of the sampled tokens; the gradient equals a
hand-built chain (decoder autograd → codebook rows → softmax Jacobian) on a tiny VQ."""
import pytest
import torch

from tiny import tiny_tokenizer
from vapi.objectives.ste import gumbel_softmax_st, relaxed_decode


def test_gumbel_st_is_one_hot_forward_with_soft_gradient():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    y = gumbel_softmax_st(logits, tau=0.7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y.sum(-1), torch.ones(2, 3)) and set(y.unique().tolist()) <= {0.0, 1.0}
    y.mul(torch.arange(5.0)).sum().backward()
    assert logits.grad.abs().sum() > 0
    again = gumbel_softmax_st(logits, 0.7, torch.Generator().manual_seed(0))
    assert torch.equal(y, again)  # seeded: resumable


@pytest.mark.parametrize("raw", [False, True])
def test_ste_gradient_matches_hand_built_reference(raw):
    vq = tiny_tokenizer().requires_grad_(False)
    torch.manual_seed(0)
    N, T, V, tau, temp = 2, 16, 32, 0.8, 1.3
    logits = torch.randn(N, T, V, requires_grad=True)
    target = torch.rand(N, 3, 16, 16) * 2 - 1
    images, tokens = relaxed_decode(vq, logits, tau, temp, raw, torch.Generator().manual_seed(1))
    loss = (images - target).pow(2).mean()
    loss.backward()

    # Hand-built: the same Gumbel noise, the hard codes, the decoder's gradient at the chosen codebook rows.
    u = torch.rand(N, T, V, generator=torch.Generator().manual_seed(1))
    g = -torch.log(-torch.log(u))
    with torch.no_grad():
        soft = torch.softmax((logits / temp + g) / tau, dim=-1)  # [N, T, V]
    assert torch.equal(soft.argmax(-1), tokens)
    codebook = vq.quantize.embedding.weight if raw else vq.quantize.codebook()  # [V, C]
    z = codebook[tokens].view(N, 4, 4, -1).permute(0, 3, 1, 2).clone().requires_grad_(True)  # [N, C, h, w]
    ref_images = vq.decode_latent(z)
    if not raw:
        assert torch.allclose(images, vq.decode(tokens), atol=1e-5)  # exactly what the tokenizer decodes
        assert torch.allclose(ref_images, images, atol=1e-5)
    (ref_images - target).pow(2).mean().backward()
    grad_z = z.grad.permute(0, 2, 3, 1).reshape(N, T, -1)  # [N, T, C]
    grad_soft = grad_z @ codebook.t()  # [N, T, V]: dL/d(one-hot entry k) = <dL/dz, e_k>
    grad_logits = soft * (grad_soft - (grad_soft * soft).sum(-1, keepdim=True)) / (tau * temp)
    assert torch.allclose(logits.grad, grad_logits, atol=1e-6, rtol=1e-4)


def test_raw_codebook_is_the_reference_behaviour():
    vq = tiny_tokenizer()
    logits = torch.randn(1, 16, 32)
    normed, tokens = relaxed_decode(vq, logits, 1.0, generator=torch.Generator().manual_seed(0))
    raw, same = relaxed_decode(vq, logits, 1.0, raw_codebook=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tokens, same) and not torch.allclose(normed, raw)


def test_ste_refuses_tokenizers_without_a_codebook_path():
    class Opaque(torch.nn.Module):
        pass

    with pytest.raises(ValueError, match="objective.name=ste needs"):
        relaxed_decode(Opaque(), torch.randn(1, 4, 8), 1.0)
