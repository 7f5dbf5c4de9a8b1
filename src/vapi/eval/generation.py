"""Evaluate a generator in memory: FID / IS / accuracy of images sampled with `vapi.sampling.sample_images` (labels
from `balanced_labels`) under a pluggable feature network, held-out teacher-forced quality (`teacher_forced_eval`:
clean-context CE, token accuracy, entropy) and tokenizer–generator misalignment.

Used by the demo, the prior's pretraining and anyone evaluating small models without writing files (`vapi sample` +
`vapi eval` are the file-based path at scale). Uses models and objectives' token entropy; never training.

Misalignment diagnostics (what VA-π targets: token sequences the generator likes that decode badly):
- `teacher_forced_sample_error`: pixel MSE of images decoded from tokens sampled position-wise from the teacher-forced
  distribution on the clean context, against the real image — next to the tokenizer's own reconstruction MSE;
- `reencode_change_rate`: fraction of tokens that change when decode(tokens) is encoded again (off-manifold codes).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vapi.eval.features import compute_features
from vapi.eval.metrics import class_accuracy, feature_statistics, frechet_distance, inception_score
from vapi.objectives.logprobs import token_entropy


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    return torch.arange(n) % num_classes  # [n]


def reference_features(extractor, images: torch.Tensor, batch_size: int = 500):
    feats, _ = compute_features(extractor, images, batch_size=batch_size, progress=False)
    return feats


def image_metrics(extractor, images: torch.Tensor, labels: torch.Tensor, ref_feats, batch_size: int = 500) -> dict:
    """FID against `ref_feats`, IS of the extractor's class posteriors, and class accuracy of `images`."""
    feats, logits = compute_features(extractor, images, batch_size=batch_size, progress=False)
    return feature_metrics(feats, logits, labels, ref_feats)


def feature_metrics(feats, logits, labels: torch.Tensor, ref_feats) -> dict:
    """`image_metrics` from features [N, D] and logits [N, K] (or None) already computed."""
    mu, sigma = feature_statistics(feats)
    ref_mu, ref_sigma = feature_statistics(ref_feats)
    out = {"fid": frechet_distance(mu, sigma, ref_mu, ref_sigma)}
    if logits is not None:
        probs = torch.as_tensor(logits).float().softmax(-1).numpy()
        out["is"], _ = inception_score(probs, splits=1)
        out["accuracy"] = class_accuracy(torch.as_tensor(logits), labels)
    return out


@torch.no_grad()
def teacher_forced_eval(policy, tokens: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> dict:
    """Clean teacher-forced CE (nats/token), top-1 token accuracy and mean entropy (nats/token) of `policy` on
    held-out tokens [N, T] with their conditions `labels` [N], in eval mode (the mode is restored)."""
    was = policy.training
    policy.eval()
    nll, correct, entropy = 0.0, 0, 0.0
    for i in range(0, len(tokens), batch_size):
        x, y = tokens[i: i + batch_size], labels[i: i + batch_size]  # [b, T], [b]
        logits = policy.teacher_forced_logits(y, x)  # [b, T, V]
        nll += F.cross_entropy(logits.flatten(0, 1).float(), x.flatten(), reduction="sum").item()
        correct += (logits.argmax(-1) == x).sum().item()
        entropy += token_entropy(logits).item() * x.numel()
    policy.train(was)
    n = tokens.numel()
    return {"val_ce": nll / n, "val_token_acc": correct / n, "val_entropy": entropy / n}


@torch.no_grad()
def teacher_forced_sample_error(gpt, vq, images: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0,
                                seed: int = 0, batch_size: int = 250, score=None, reconstruction: bool = True) -> dict:
    """Pixel MSE of decoded teacher-forced samples of held-out `images` (eval mode). With `score(images, targets,
    condition, tokens) → [N]` (e.g. the run's reward), also its mean: VA-π's own objective on held-out images
    (`tf_sample_reward`). `reconstruction` adds the tokenizer's own numbers (`reconstruction_error`: the ceiling; they do not depend on
    `gpt`)."""
    was = gpt.training
    gpt.eval()
    g = torch.Generator().manual_seed(seed)

    def sample(x, y):
        codes = vq.encode(x)  # [b, T]
        logits = gpt.teacher_forced_logits(y, codes) / temperature  # [b, T, V]
        return torch.multinomial(logits.softmax(-1).flatten(0, 1), 1, generator=g).view_as(codes)

    out = _decoded_error("tf_sample", vq, images, labels, sample, batch_size, score)
    gpt.train(was)
    return {**out, **(reconstruction_error(vq, images, batch_size, score, labels) if reconstruction else {})}


@torch.no_grad()
def reconstruction_error(vq, images: torch.Tensor, batch_size: int = 250, score=None, labels=None) -> dict:
    """The tokenizer's own pixel MSE on `images` (decode(encode(x)) vs x), and `score`'s mean on it if given
    (with the images' `labels` as its condition, when given)."""
    return _decoded_error("recon", vq, images, labels, lambda x, _: vq.encode(x), batch_size, score)


def _decoded_error(name: str, vq, images, conditions, tokens_of, batch_size: int, score) -> dict:
    """{name_mse, name_reward}: pixel MSE (and `score(decoded, x, c, tokens)`) of vq.decode(tokens_of(x, c))
    against x, over batches; `conditions` may be None."""
    err, reward = [], []
    for s in range(0, len(images), batch_size):
        x = images[s:s + batch_size]
        c = None if conditions is None else conditions[s:s + batch_size]
        tokens = tokens_of(x, c)  # [b, T]
        decoded = vq.decode(tokens)  # [b, 3, H, W]
        err.append((decoded - x).pow(2).flatten(1).mean(1))
        if score is not None:
            reward.append(score(decoded, x, c, tokens))
    out = {f"{name}_mse": torch.cat(err).mean().item()}
    if reward:
        out[f"{name}_reward"] = torch.cat(reward).mean().item()
    return out


@torch.no_grad()
def reencode_change_rate(vq, tokens: torch.Tensor, batch_size: int = 500, pixel_error: bool = False,
                         images: torch.Tensor | None = None):
    """Fraction of tokens [N, T] that change when their decoded image (clamped to [-1, 1]) is encoded again; with
    `pixel_error`, (fraction, pixel MSE between decode(tokens) and the decode of the re-encoded tokens): the second
    ignores swaps between near-synonym codes that decode alike. `images`: decode(tokens) when already at hand."""
    changed, err = 0, 0.0
    for s in range(0, len(tokens), batch_size):
        t = tokens[s:s + batch_size]
        x = (vq.decode(t) if images is None else images[s:s + batch_size]).clamp(-1, 1)  # [b, 3, H, W]
        again = vq.encode(x)  # [b, T]
        changed += (again != t).sum().item()
        if pixel_error:
            err += (vq.decode(again).clamp(-1, 1) - x).pow(2).mean((1, 2, 3)).sum().item()
    rate = changed / tokens.numel()
    return (rate, err / len(tokens)) if pixel_error else rate
