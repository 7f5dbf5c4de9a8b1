"""Log-probabilities of chosen tokens without materialising [N, T, V] float32 copies of the logits.

`log_softmax(logits.float() / τ).gather(...)` keeps up to three vocabulary-wide copies alive for backward (the float
cast, the scaled logits, the log-softmax output). At V 16384, T 576 and 16 images one copy is 0.6 GB. Here the
log-softmax is taken over chunks of positions, only the chosen entries are kept, and backward recomputes the softmax
chunk by chunk: the one vocabulary-wide tensor left is the gradient of the logits itself. Values are those of
`log_softmax` on each chunk, so they equal the unchunked computation.

The shared-context update scores G sampled sequences against one forward per image: `rows[n]` says which row of the
logits sequence n was sampled from, so G sequences gather from the same logits row without copying it G times.
"""
from __future__ import annotations

import torch

# Positions per chunk are chosen so that one float32 chunk holds at most this many elements (64 MiB).
CHUNK_ELEMENTS = 1 << 24
_MIN_TEMPERATURE = 1e-5  # guards a zero temperature the same way the reference does


def _chunks(logits: torch.Tensor):
    b, T, V = logits.shape
    step = max(1, CHUNK_ELEMENTS // max(1, b * V))
    for start in range(0, T, step):
        yield slice(start, min(T, start + step))


class _GatherLogSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, tokens, rows, temperature):
        # logits [b, T, V]; tokens [N, T] long; rows [N] long in [0, b) → [N, T] float32
        N, T = tokens.shape
        out = torch.empty(N, T, dtype=torch.float32, device=logits.device)
        for c in _chunks(logits):
            logp = torch.log_softmax(logits[:, c].float() / temperature, dim=-1)  # [b, t, V], transient
            pos = torch.arange(c.start, c.stop, device=logits.device)
            out[:, c] = logp[rows[:, None], pos[None, :] - c.start, tokens[:, c]]
        ctx.save_for_backward(logits, tokens, rows)
        ctx.temperature = temperature
        return out

    @staticmethod
    def backward(ctx, grad_out):
        # d logp[n, t, tokens[n, t]] / d logits[rows[n], t, :] = (onehot(tokens[n, t]) - softmax) / τ
        logits, tokens, rows = ctx.saved_tensors
        tau = ctx.temperature
        b = logits.shape[0]
        grad = torch.empty_like(logits)  # [b, T, V], the only vocabulary-wide allocation that outlives a chunk
        for c in _chunks(logits):
            g = grad_out[:, c].float()  # [N, t]
            per_row = torch.zeros(b, g.shape[1], dtype=torch.float32, device=g.device).index_add_(0, rows, g)  # [b, t]
            chunk = -torch.softmax(logits[:, c].float() / tau, dim=-1) * per_row.unsqueeze(-1)  # [b, t, V]
            pos = torch.arange(g.shape[1], device=g.device)
            chunk.index_put_((rows[:, None].expand_as(g), pos[None, :].expand_as(g), tokens[:, c]), g, accumulate=True)
            grad[:, c] = chunk / tau
        return grad, None, None, None


def gather_logprobs(logits: torch.Tensor, tokens: torch.Tensor, rows: torch.Tensor | None = None,
                    temperature: float = 1.0) -> torch.Tensor:
    """log_softmax(logits / temperature)[rows[n], t, tokens[n, t]] in float32, exact and memory-lean.

    logits: [b, T, V] (any float dtype); tokens: [N, T] long; rows: [N] long indices into the b logits rows, or None
    for rows = 0..N-1 (then b == N) → [N, T]. Differentiable with respect to `logits`.
    """
    if rows is None:
        rows = torch.arange(tokens.shape[0], device=tokens.device)
    return _GatherLogSoftmax.apply(logits, tokens, rows, max(temperature, _MIN_TEMPERATURE))


@torch.no_grad()
def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean per-position entropy (nats) of softmax(logits / temperature), logits [N, T, V], in chunks → []."""
    total = torch.zeros((), dtype=torch.float64, device=logits.device)
    for c in _chunks(logits):
        logp = torch.log_softmax(logits[:, c].float() / max(temperature, _MIN_TEMPERATURE), dim=-1)  # [N, t, V]
        total += -(logp.exp() * logp).sum(-1).sum(dtype=torch.float64)
    return (total / (logits.shape[0] * logits.shape[1])).float()
