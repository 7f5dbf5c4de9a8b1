"""Tokens/s of KV-cache `generate` against cache-free `generate_uncached`, measured side by side in one run.

Both draw the same tokens (greedy, same model and conditions; checked), so the ratio is the KV cache's speed-up
alone. The cache-free baseline re-runs the whole prefix for each token: O(T²) token-forwards against O(T).

    python benchmarks/bench_generate.py                        # dim 256, 4 layers, vocab 1024, batch 8, 256 tokens, CPU
    python benchmarks/bench_generate.py --cfg 4 --device cuda  # with the CFG batch doubling
"""
from __future__ import annotations

import argparse

import torch

from timing import timed
from vapi.models.llamagen_gpt import GPTConfig, LlamaGenGPT
from vapi.sampling import SamplingConfig, generate, generate_uncached


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=None)
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--tokens", type=int, default=256, help="image tokens per sample (a square number)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--cfg", type=float, default=1.0, help="guidance scale; != 1 doubles the batch")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    torch.manual_seed(0)
    cfg = GPTConfig(dim=args.dim, n_layer=args.layers, n_head=args.heads, n_kv_head=args.kv_heads,
                    vocab_size=args.vocab, block_size=args.tokens, num_classes=1000)
    model = LlamaGenGPT(cfg).to(device).eval()
    torch.nn.init.normal_(model.output.weight, std=0.02)  # LlamaGen zero-inits the head: every token would tie
    cond = torch.arange(args.batch, device=device) % cfg.num_classes  # [B]
    sampling = SamplingConfig(cfg_scale=args.cfg, greedy=True)

    generate(model, cond, sampling, num_tokens=8)  # warm-up (allocator, kernels)
    t_cached, cached = timed(lambda: generate(model, cond, sampling), device, args.repeats)
    t_uncached, uncached = timed(lambda: generate_uncached(model, cond, sampling), device, args.repeats)
    if not torch.equal(cached, uncached):
        raise SystemExit("KV-cache and cache-free generation disagree: the timing comparison is invalid")

    n = args.batch * args.tokens
    result = {"cached_tok_s": n / t_cached, "uncached_tok_s": n / t_uncached, "speedup": t_uncached / t_cached}
    params = sum(q.numel() for q in model.parameters()) / 1e6
    print(f"GPT dim {args.dim}, {args.layers} layers, {args.heads} heads, vocab {args.vocab} ({params:.1f} M params); "
          f"batch {args.batch} x {args.tokens} tokens, cfg {args.cfg}, {device}, {torch.get_num_threads()} threads")
    print(f"generate (KV cache):  {t_cached:8.2f} s  {result['cached_tok_s']:9.1f} tokens/s")
    print(f"generate_uncached:    {t_uncached:8.2f} s  {result['uncached_tok_s']:9.1f} tokens/s")
    print(f"KV-cache speed-up:    {result['speedup']:8.1f}x")
    return result


if __name__ == "__main__":
    main()
