"""`vapi report RUN_DIR`: a markdown summary and PNG curves of a finished or running run, without TensorBoard.

Reads `<run>/metrics.jsonl` (and `run_summary.json`, `samples/`, `checkpoints/` when present) and writes
`<run>/report/report.md` with `curves.png`: one panel per logged quantity, in this order: reward and each reward
term, the loss and its parts, clip ratio and ratio, entropy, generation metrics (`gen/*`) and any other evaluation
numbers, then learning rate and gradient norm. Noisy curves get a moving average drawn over the raw values.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

ORDER = ("reward", "reward_std", "rewards/", "loss", "policy_loss", "prior_ce", "kl", "clip_ratio",
         "ratio_mean", "entropy", "advantage_abs", "frac_reward_zero_std", "gen/")
TAIL = ("learning_rate", "lr", "grad_norm")
SKIP = ("step", "step_time", "seqs_per_sec", "num_tokens")


def read_metrics(path: Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written by a running job
    return rows


def curve_keys(rows: list[dict]) -> list[str]:
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in SKIP))

    def rank(key: str) -> tuple[int, int]:
        for i, prefix in enumerate(ORDER):
            if key == prefix or (prefix.endswith("/") and key.startswith(prefix)):
                return 0, i
        return (2, TAIL.index(key)) if key in TAIL else (1, 0)

    return sorted(keys, key=rank)


def _smooth(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_curves(rows: list[dict], path: Path, columns: int = 4) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = curve_keys(rows)
    if not keys:
        return []
    n_rows = math.ceil(len(keys) / columns)
    fig, axes = plt.subplots(n_rows, columns, figsize=(3.6 * columns, 2.6 * n_rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        pts = [(r["step"], r[key]) for r in rows if key in r and isinstance(r[key], (int, float))
               and math.isfinite(r[key])]
        if pts:
            steps, values = zip(*pts)
            marker = "o" if len(values) < 30 else None
            if len(values) > 40:
                ax.plot(steps, values, color="C0", alpha=0.25, lw=0.8)
                ax.plot(steps, _smooth(list(values), max(5, len(values) // 25)), color="C0", lw=1.4)
            else:
                ax.plot(steps, values, color="C0", marker=marker, ms=3, lw=1.2)
        ax.set_title(key, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("step", fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return keys


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    from vapi.training.resolve import latest_step_dir

    run = Path(run_dir)
    metrics_file = run / "metrics.jsonl"
    if not metrics_file.is_file():
        raise FileNotFoundError(f"{run} has no metrics.jsonl: is it a `vapi train` output_dir?")
    out = Path(out_dir) if out_dir else run / "report"
    rows = read_metrics(metrics_file)
    train_rows = [r for r in rows if "loss" in r or "reward" in r]
    keys = plot_curves(rows, out / "curves.png")
    last_step = max((r["step"] for r in rows), default=0)
    lines = [f"# vapi run report: {run.name}", "", f"- run folder: `{run.resolve()}`",
             f"- steps logged: {len(train_rows)} (last step {last_step})"]
    final = latest_step_dir(run)
    if final is not None:
        lines.append(f"- latest checkpoint: `{final / 'model'}`")
    summary_file = run / "run_summary.json"
    if summary_file.is_file():
        s = json.loads(summary_file.read_text())
        g, b = s.get("generator", {}), s.get("batch", {})
        lines.append(f"- generator: {g.get('preset', g.get('kind'))} ({g.get('parameters_m')} M parameters), "
                     f"{s.get('resolution', {}).get('image_size')} px, {s.get('resolution', {}).get('token_grid')} "
                     f"tokens; data: {s.get('dataset', {}).get('images')} images")
        lines.append(f"- batch: {b.get('images_per_step')} images × {b.get('sequences_per_image')} samples = "
                     f"{b.get('sequences_per_step')} sequences per step; {s.get('precision')}, {s.get('device')}")
    lines += ["", "## Metrics", "", "| metric | first | last | min | max |", "|---|---|---|---|---|"]
    for key in keys:
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        if values:
            lines.append(f"| {key} | {_fmt(values[0])} | {_fmt(values[-1])} | {_fmt(min(values))} | "
                         f"{_fmt(max(values))} |")
    if keys:
        lines += ["", "## Curves", "", "![curves](curves.png)"]
    grids = sorted((run / "samples").glob("step-*.png")) if (run / "samples").is_dir() else []
    if grids:
        lines += ["", "## Free-running samples (same conditions and seed at every step)", "",
                  "Top row unguided, second row with guidance (when configured).", ""]
        for grid in (grids[0], grids[-1]) if len(grids) > 1 else grids:
            rel = Path("..") / grid.relative_to(run) if out == run / "report" else grid.resolve()
            lines += [f"step {int(grid.stem.split('-')[1])}:", "", f"![{grid.stem}]({rel.as_posix()})", ""]
    path = out / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
