"""vapi.eval.generation: held-out teacher-forced CE, token accuracy and entropy, computed in batches."""
import torch
import torch.nn.functional as F

from tiny import tiny_policy
from vapi.eval.generation import reencode_change_rate, teacher_forced_eval, teacher_forced_sample_error


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


class _CappingVQ:
    """decode: token t → a 1×1×T 'image' of value t / 10; encode: rounds back and caps every code at 5, so tokens
    above 5 change on re-encoding, and their pixels move by (t − 5) / 10."""

    def decode(self, t):
        return (t.float() / 10).view(len(t), 1, 1, -1)

    def encode(self, x):
        return (x.view(len(x), -1) * 10).round().long().clamp(max=5)


def test_reencode_change_rate_counts_changed_codes_and_their_pixel_error():
    tokens = torch.tensor([[1, 2, 7, 9], [5, 6, 0, 3]])  # 3 of 8 codes exceed 5: 7, 9, 6
    assert reencode_change_rate(_CappingVQ(), tokens, batch_size=1) == 3 / 8
    rate, mse = reencode_change_rate(_CappingVQ(), tokens, batch_size=1, pixel_error=True)
    # per image: ((0.2)² + (0.4)²) / 4 = 0.05 and (0.1)² / 4 = 0.0025 → mean 0.02625
    assert rate == 3 / 8 and abs(mse - 0.02625) < 1e-7
    decoded = _CappingVQ().decode(tokens)  # already at hand: not decoded again, same answer
    assert reencode_change_rate(_CappingVQ(), tokens, batch_size=1, images=decoded) == 3 / 8


class _ExactVQ:
    """A lossless toy tokenizer: token t ↔ pixel value t / 100 (a 1×1×T image), so reconstructions are exact."""

    def decode(self, t):
        return (t.float() / 100).view(len(t), 1, 1, -1)

    def encode(self, x):
        return (x.view(len(x), -1) * 100).round().long()


def test_teacher_forced_sample_error_scores_samples_and_reconstructions_with_the_given_reward():
    policy = tiny_policy().eval()
    vq = _ExactVQ()
    tokens = torch.randint(0, 32, (5, 16), generator=torch.Generator().manual_seed(1))
    images, labels = vq.decode(tokens), torch.arange(5)
    seen = []

    def neg_mse(im, tg, condition, tokens):  # the reward's signature: the labels and the sampled tokens come along
        seen.append((condition, tokens))
        assert tokens.shape == (len(im), 16) and torch.equal(vq.decode(tokens), im)
        return -(im - tg).pow(2).flatten(1).mean(1)

    out = teacher_forced_sample_error(policy, vq, images, labels, batch_size=2, score=neg_mse)
    assert out["recon_mse"] == 0.0 and out["recon_reward"] == 0.0  # lossless tokenizer: its own ceiling is 0
    assert out["tf_sample_mse"] > 0 and abs(out["tf_sample_reward"] + out["tf_sample_mse"]) < 1e-7
    assert [c.tolist() for c, _ in seen] == [[0, 1], [2, 3], [4]] * 2  # samples, then reconstructions, with labels
    assert set(teacher_forced_sample_error(policy, vq, images, labels)) == {"tf_sample_mse", "recon_mse"}
    alone = teacher_forced_sample_error(policy, vq, images, labels, batch_size=2, score=neg_mse, reconstruction=False)
    assert alone == {k: out[k] for k in ("tf_sample_mse", "tf_sample_reward")}  # the same samples, no tokenizer part
