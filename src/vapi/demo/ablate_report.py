"""A study's report: per row the mean over seeds and its difference to the base and to the matched control with a
95 % bootstrap interval over seeds, the measured evaluation noise, the paper's numbers and direction beside ours,
a verdict computed from the intervals, PNG plots, sample grids, training curves and wall times."""
from __future__ import annotations

import copy
import json
import random
import statistics
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vapi.demo.run import apply_overrides  # noqa: E402
from vapi.imageio import save_grid  # noqa: E402

METRICS = [("fid_nocfg", "FID", "{:.3f}"), ("fid_cfg", "FID (CFG)", "{:.3f}"), ("is_nocfg", "IS", "{:.2f}"),
           ("precision_nocfg", "precision", "{:.3f}"), ("recall_nocfg", "recall", "{:.3f}"),
           ("accuracy_nocfg", "accuracy", "{:.3f}"), ("accuracy_cfg", "accuracy (CFG)", "{:.3f}"),
           ("val_ce", "clean val CE", "{:.3f}"), ("tf_sample_mse", "TF sample MSE", "{:.4f}"),
           ("tf_sample_reward", "held-out TF reward", "{:.4f}"),
           ("reencode_change", "re-encode change", "{:.3f}")]
KEY = ("fid_nocfg", "accuracy_nocfg")  # the metrics that get intervals in the main table


def moving_average(values, window: int) -> list[float]:
    return [statistics.fmean(values[max(0, i - window + 1):i + 1]) for i in range(len(values))]


def plot_curves(curves: dict, path: Path) -> None:
    """One panel per logged metric; `curves`: {row label: [metrics.jsonl of each seed]}."""
    keys = [("reward", "reward (teacher-forced samples)"), ("prior_ce", "prior CE on the training batch (nats)"),
            ("entropy", "policy entropy (nats)"), ("grad_norm", "gradient norm")]
    if any("val_ce" in line for files in curves.values() for f in files for line in Path(f).read_text().splitlines()):
        keys.insert(2, ("val_ce", "clean validation CE (nats)"))  # post.eval_steps > 0
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4))
    for ax, (key, title) in zip(axes, keys):
        for variant, files in curves.items():
            for i, f in enumerate(files):
                rows = [json.loads(line) for line in Path(f).read_text().splitlines()]
                pts = [(r["step"], r[key]) for r in rows if key in r]
                if pts:
                    color = f"C{list(curves).index(variant)}"
                    steps, values = zip(*pts)
                    if len(values) > 20:  # per-step values are noisy: show them faintly under a moving average
                        ax.plot(steps, values, color=color, alpha=0.2)
                        values = moving_average(values, 10)
                    ax.plot(steps, values, color=color, alpha=0.9, label=variant if i == 0 else None)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bootstrap_mean_ci(values: list[float], n: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of `values` and the 2.5 / 97.5 percentiles of the mean over `n` resamples with replacement."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(values, k=len(values))) for _ in range(n))
    return mean, means[int(0.025 * n)], means[min(n - 1, int(0.975 * n))]


def paired_differences(rows: list[dict], ref: list[dict], metric: str) -> list[float]:
    """Row seed s minus reference seed s: two post-trained rows share the data order of seed s. A reference with
    another number of seeds (an interrupted row) is taken at its mean."""
    if len(ref) != len(rows):
        return differences_to_base(rows, ref, metric)
    return [a[metric] - b[metric] for a, b in zip(rows, ref)]


def differences_to_base(rows: list[dict], base: list[dict], metric: str) -> list[float]:
    """Row seed s minus the base's mean over its evaluation seeds: the base has no post-training seed to pair with
    (its entries are sampling seeds, unrelated to a row's seed s)."""
    mean = statistics.fmean(r[metric] for r in base)
    return [r[metric] - mean for r in rows]


def fmt_ci(values: list[float], spec: str) -> str:
    m, lo, hi = bootstrap_mean_ci(values)
    if lo != lo:  # nan: one seed
        return spec.format(m) + " (1 seed)"
    return f"{spec.format(m)} [{spec.format(lo)}, {spec.format(hi)}]"


def excludes_zero(values: list[float]) -> int:
    """+1 / -1 when the 95 % interval of the mean lies above / below zero, else 0."""
    _, lo, hi = bootstrap_mean_ci(values)
    return 1 if lo > 0 else -1 if hi < 0 else 0


def noise_line(base_runs: list[dict], n_samples: int) -> str:
    fids = [r["fid_nocfg"] for r in base_runs]
    accs = [r["accuracy_nocfg"] for r in base_runs]
    if len(fids) < 2:
        return f"Evaluation noise: one evaluation seed, not measured ({n_samples} samples)."
    return (f"Evaluation noise (base prior, {len(fids)} sampling seeds, N = {n_samples} samples each): FID "
            f"{statistics.fmean(fids):.3f} ± {statistics.stdev(fids):.3f} (sd; 95 % of single evaluations within "
            f"± {1.96 * statistics.stdev(fids):.3f}), accuracy {statistics.fmean(accs):.3f} ± "
            f"{statistics.stdev(accs):.3f}.")


def fmt_spread(values: list[float], spec: str) -> str:
    """Mean ± sd (the mean alone for one value; "" for none)."""
    if not values:
        return ""
    sd = f" ± {spec.format(statistics.stdev(values))}" if len(values) > 1 else ""
    return spec.format(statistics.fmean(values)) + sd


def main_table(rows, results: dict) -> list[str]:
    head = ("| row | seeds | " + " | ".join(label for _, label, _ in METRICS) + " |")
    lines = [head, "|" + "---|" * (len(METRICS) + 2)]
    for row in rows:
        runs = results.get(row.name)
        if not runs:
            continue
        cells = []
        for metric, _, spec in METRICS:
            cells.append(fmt_spread([r[metric] for r in runs if metric in r], spec))
        n = "eval seeds " + str(len(runs)) if not row.train else str(len(runs))
        lines.append(f"| {row.label} | {n} | " + " | ".join(cells) + " |")
    return lines


def difference_table(rows, results: dict, control: str | None) -> list[str]:
    lines = ["| row | ΔFID vs base [95 % CI] | ΔFID vs control | Δaccuracy vs base | Δaccuracy vs control | "
             "paper | paper's direction (FID vs base) | ours | agree? |", "|---|---|---|---|---|---|---|---|---|"]
    base = results["base"]
    for row in rows:
        runs = results.get(row.name)
        if not runs or not row.train:
            continue
        own = getattr(row, "control", control)  # the row's own matched control (a sweep pairs each setting)
        ctrl = results.get(own) if own else None
        cells = []
        for metric in KEY:
            cells.append(fmt_ci(differences_to_base(runs, base, metric), "{:+.3f}"))
            cells.append(fmt_ci(paired_differences(runs, ctrl, metric), "{:+.3f}") if ctrl and row.name != own
                         else "")
        sign = excludes_zero(differences_to_base(runs, base, "fid_nocfg"))
        ours = {1: "higher", -1: "lower", 0: "no change (CI spans 0)"}[sign] if len(runs) > 1 else "one seed"
        agree = "" if not row.expect or len(runs) < 2 else ("yes" if ours == row.expect else "no")
        lines.append(f"| {row.label} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} | {row.paper or '—'} | "
                     f"{row.expect or '—'} | {ours} | {agree} |")
    return lines


CFG_WORDS = {"fid_nocfg": "without CFG", "fid_cfg": "with CFG"}  # the FIDs a convergence check reads


def convergence_check(continued: list[dict], base: list[dict], what: str, stage: str) -> str:
    """One line: does training `stage` further (`continued`, runs over seeds) move FID, without and with CFG,
    beyond the interval? `stage`: its bare name ("base", "tokenizer")."""
    signs = {key: excludes_zero(differences_to_base(continued, base, key)) for key in CFG_WORDS
             if all(key in r for r in continued + base)}
    better, worse = -1 in signs.values(), 1 in signs.values()
    if better and worse:
        side = {-1: "lowers", 1: "raises", 0: "leaves"}
        return (f"- {what} {side[signs['fid_nocfg']]} FID without CFG but {side[signs['fid_cfg']]} it with CFG "
                f"(intervals excluding zero): mixed, not a uniformly better {stage}.")

    def which(sign: int) -> str:  # "without CFG", "with CFG" or both: the FIDs whose interval has this sign
        return " and ".join(words for key, words in CFG_WORDS.items() if signs.get(key) == sign)

    still = which(0)
    unchanged = f"; {still} within its interval" if still else ""
    if better:
        return (f"- {what} **improves** FID {which(-1)} beyond the interval{unchanged}: the {stage} is not at its "
                "plateau for these settings.")
    if worse:
        return (f"- {what} makes FID worse {which(1)} (interval above zero{unchanged}): the {stage} is not "
                "undertrained for these settings.")
    return (f"- {what} does not change FID beyond its interval: consistent with a converged "
            f"{stage}.")


def prior_phrase(objective) -> str:
    """The prior term in words: the paper's CE to the clean tokens (`prior_weight`), a KL to the initial policy
    (`beta`), both, or none."""
    terms = [f"{name} β {w:g}" for name, w in (("CE prior", objective.prior_weight), ("KL-to-reference prior",
                                                                                      objective.beta)) if w > 0]
    return " + ".join(terms) or "no prior term"


def control_has_ce(rows, control: str | None, objective) -> bool:
    """Whether the study's matched control, resolved (the demo's `objective` under the control row's own overrides),
    trains on a CE term: the CE method, or a CE prior (`prior_weight` > 0)."""
    row = next((r for r in rows if r.name == control), None)
    resolved = SimpleNamespace(objective=copy.deepcopy(objective))
    apply_overrides(resolved, {k: v for k, v in (row.overrides if row else {}).items() if k.startswith("objective.")})
    return resolved.objective.name == "ce" or resolved.objective.prior_weight > 0


def base_continuation(results: dict, control: str | None, control_ce: bool) -> str | None:
    """The row that continues the base on its own objective (the base's convergence check): the CE fine-tune when
    the study ran it, else the matched control if it trains on a CE term (`control_has_ce`); with only a
    KL-to-reference prior (or none) the control returns the base itself (no gradient at the reference), so it checks
    nothing."""
    if "ce" in results:
        return "ce"
    return control if control in results and control_ce else None


def tokenizer_floor(base: list[dict]) -> list[str]:
    """The line that says how much of the base's FID the tokenizer accounts for (Evaluator.tokenizer_alignment on
    the base's first evaluation)."""
    if not base or "recon_fid" not in base[0]:
        return []
    alignment, fid = base[0], statistics.fmean(r["fid_nocfg"] for r in base)
    return [f"- The tokenizer's floor: FID of its reconstructions of {alignment['floor_images']} training images "
            f"{alignment['recon_fid']:.3f} "
            f"(what a generator that reproduced their tokens exactly would score), of the real images themselves "
            f"{alignment['real_fid']:.3f} (the sampling floor), of the base's samples {fid:.3f}: above the floor, "
            f"the tokenizer alone is {alignment['recon_fid'] - alignment['real_fid']:+.3f}, the base "
            f"{fid - alignment['real_fid']:+.3f}."]


def verdict(rows, results: dict, control: str | None, continuation: str | None) -> list[str]:
    """The verdict lines; `continuation`: the row that checks the base's convergence (`base_continuation`)."""
    out = []
    judged = next((r.label for r in rows if r.name == "vapi"), "VA-π")  # the sweep's `vapi` is a CE-prior variant
    if "vapi" in results and control in results:
        out.append(f"- Judged row: `vapi` ({judged}) against `{control}`.")
        v = results["vapi"]
        d_base = excludes_zero(differences_to_base(v, results["base"], "fid_nocfg"))
        d_ctrl = excludes_zero(paired_differences(v, results[control], "fid_nocfg"))
        words = {-1: "lower than", 1: "higher than", 0: "not distinguishable from"}
        out.append(f"- VA-π's FID without CFG is {words[d_base]} the base's and {words[d_ctrl]} the matched "
                   f"control's (95 % bootstrap intervals over {len(v)} seed(s)"
                   + ("; with fewer than 3 seeds the interval is only the range of the seeds" if len(v) < 3 else "")
                   + ").")
        out.append("- The aim (VA-π lowers FID relative to both, intervals excluding zero) is "
                   + ("**reached**." if d_base == -1 and d_ctrl == -1 else
                      "**not reached**: the paper's FID effect is not shown on these stages at these settings."))
        if all("fid_cfg" in r for r in v + results["base"] + results[control]):  # the aim is unguided; say both
            base_cfg = differences_to_base(v, results["base"], "fid_cfg")
            ctrl_cfg = paired_differences(v, results[control], "fid_cfg")
            out.append(f"- With CFG, VA-π's FID is {words[excludes_zero(base_cfg)]} the base's "
                       f"({fmt_ci(base_cfg, '{:+.3f}')}) and {words[excludes_zero(ctrl_cfg)]} the matched control's "
                       f"({fmt_ci(ctrl_cfg, '{:+.3f}')}).")
    if "vapi" in results and control in results and all("tf_sample_reward" in r
                                                         for r in results["vapi"] + results[control]):
        diffs = paired_differences(results["vapi"], results[control], "tf_sample_reward")
        words = {1: "higher than", -1: "lower than", 0: "not distinguishable from"}
        out.append(f"- VA-π's own objective on held-out images (the reward of teacher-forced samples, "
                   f"{fmt_ci(diffs, '{:+.4f}')} vs the matched control) is {words[excludes_zero(diffs)]} the "
                   f"control's.")
    if continuation in results and "base" in results:
        what = ("the CE fine-tune (the `ce` row: VA-π's update mode, batch, lr, steps and data order)"
                if continuation == "ce" else "the matched control (the same update without the policy term)")
        out.append(convergence_check(results[continuation], results["base"], f"Base convergence check: {what}",
                                     "base"))
    elif control in results and "base" in results:
        out.append("- Base convergence check: not run. The matched control has no CE term (with a KL-to-reference "
                   "prior alone, or none, it returns the base itself) and the study has no `ce` row (`vapi ablate "
                   "main` has one).")
    if "tokenizer" in results and "base" in results:
        out.append(convergence_check(results["tokenizer"], results["base"], "Tokenizer convergence check: "
                                     "fine-tuning the tokenizer's decoder (the `tokenizer` row)", "tokenizer"))
    out += tokenizer_floor(results.get("base", []))
    if "vapi_no_prior" in results and "vapi" in results:
        worse = statistics.fmean(r["fid_nocfg"] for r in results["vapi_no_prior"]) > statistics.fmean(
            r["fid_nocfg"] for r in results["vapi"])
        out.append(f"- β = 0 is {'worse' if worse else 'NOT worse'} than VA-π with the prior term (mean FID).")
    return out


def selection_note(first_seed: int, seeds: int, on_shipped_base: bool) -> list[str]:
    """Seeds 0-2 chose the demo's post-training defaults, on earlier bases (the KL prior on the 1800-step tokenizer's,
    lr 5e-5 on the 7200-step one's): on the shipped stages a verdict on those seeds shares their numbers with that
    choice, not the models; on other stages or data the choice was not made with them."""
    if first_seed > 2 or seeds < 1 or not on_shipped_base:
        return []
    span = f"seed {first_seed}" if seeds == 1 else f"seeds {first_seed}–{first_seed + seeds - 1}"
    return [f"- Post-training {span}. The demo's post-training defaults were chosen on seeds 0–2 with the "
            "evaluation network's FID on earlier bases (the KL prior at β 1 on the 1800-step tokenizer's, lr 5e-5 on "
            "the 7200-step one's; README, \"The demo\") and carried over to these stages: the pre-registered search "
            "on them (docs/search-28800.md) found no setting below the matched control and kept the defaults."]


def plot_rows(rows, results: dict, path: Path) -> None:
    names = [r for r in rows if r.name in results]
    fig, axes = plt.subplots(1, len(KEY), figsize=(5 * len(KEY), 0.5 * len(names) + 1.8))
    for ax, metric in zip(axes, KEY):
        for i, row in enumerate(names):
            vals = [r[metric] for r in results[row.name]]
            m, lo, hi = bootstrap_mean_ci(vals)
            ax.scatter(vals, [i] * len(vals), color="C0", alpha=0.35, s=14)
            if lo == lo:
                ax.plot([lo, hi], [i, i], color="C3")
            ax.scatter([m], [i], color="C3", s=30, zorder=3)
        ax.set_yticks(range(len(names)), [r.label for r in names], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{metric} (dots: seeds; red: mean and 95 % CI)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def data_line(cfg, num_classes: int) -> str:
    """The report's first words: which images, at which size, how many classes."""
    d, side = cfg.data, f"{cfg.data.image_size}×{cfg.data.image_size}"
    if d.root:
        return f"The user's images: `{d.root}` (training), `{d.test_root}` (held out), {side}, {num_classes} classes."
    return f"Procedural shapes {side}, {num_classes} classes."


def network_lines(cfg, user: dict) -> list[str]:
    """The report's "Networks" section: the user's stages by folder and content key (`user`: Stages.user), the
    demo's by their settings."""
    def which(name: str, demo: str) -> str:
        if name not in user:
            return demo
        return f"the user's `{user[name]['folder']}`, content key {user[name]['key']}, used as given"

    if "tokenizer" in user:  # the prior: the user's, or the demo's built on the user's tokenizer
        prior = which("prior", "the demo's, built on it")
        tokenizer_prior = f"- tokenizer: {which('tokenizer', '')}; prior: {prior}"
    else:
        tokenizer_prior = "- tokenizer, prior: the demo's stages (study.json names their folders)"
    evalnet = which("evalnet", f"convnet widths {cfg.evalnet.widths}, seed {cfg.evalnet.seed}")
    perceptual = which("perceptual", f"convnet widths {cfg.perceptual.widths}, seed {cfg.perceptual.seed}, its own "
                                     "training run")
    return [f"{tokenizer_prior}; the tokenizer stays frozen.",
            f"- evaluation network ({evalnet}): measures only; never a loss or a reward.",
            f"- perceptual reward network ({perceptual}): LPIPS-style distance, no learned heads."]


def time_lines(rows, times: dict, stages) -> list[str]:
    """Each method's post-training time per run (mean ± sd over seeds; a reused run keeps its first time), then the
    stages' (built, cached or shipped) and the evaluations' totals."""
    per_run = [f"| {r.label} | {fmt_spread(times[r.name], '{:.1f}')} | {len(times[r.name])} |"
               for r in rows if times.get(r.name)]
    return ["| method (row) | post-training seconds per run | runs |", "|---|---|---|", *per_run, "",
            "| stage | seconds | source |", "|---|---|---|",
            *[f"| {k} | {v:.1f} | {stages.cached.get(k, '')} |" for k, v in stages.times.items()]]


def write_study_report(run_dir: Path, cfg, study: str, rows, results: dict, grids: dict, curves: dict, stages,
                       times: dict, real, num_classes: int) -> Path:
    control = "control" if "control" in results else None
    continuation = base_continuation(results, control, control_has_ce(rows, control, cfg.post.objective))
    save_grid(real, run_dir / "real.png", nrow=8)
    for name, images in grids.items():
        save_grid(images, run_dir / f"samples_{name}.png", nrow=8)
    shown = [n for n in ["base", *[r.name for r in rows]] if (run_dir / f"samples_{n}.png").is_file()]
    plot_rows(rows, results, run_dir / "rows.png")
    labels = {r.name: r.label for r in rows}
    if curves:
        plot_curves({labels.get(k, k): v for k, v in curves.items()}, run_dir / "curves.png")
    base = results["base"][0]
    p = cfg.post
    selection = selection_note(cfg.first_seed, cfg.seeds,
                               all(stages.cached.get(n) == "shipped" for n in ("tokenizer", "prior")))
    table = main_table(rows, results)
    diffs = difference_table(rows, results, control)
    lines = [
        f"# vapi ablate {study}", "",
        f"{data_line(cfg, num_classes)} Post-training: {p.steps} steps, "
        f"{p.images_per_step} images/step × G {p.objective.num_generations}, lr {p.optim.learning_rate:g}, update in "
        f"{p.objective.policy_mode} mode, ξ {p.objective.context_noise:g}, {prior_phrase(p.objective)}, reward "
        f"MSE {p.reward.mse:g} + perceptual {p.reward.perceptual:g} + LPIPS {p.reward.lpips:g}; each row overrides "
        f"only what it varies. {cfg.seeds} post-training seed(s) per row (seed s: the same data order in every row). "
        f"Every post-trained model: {cfg.eval_samples} class-balanced samples, sampling seed {cfg.eval_seed}, "
        f"unguided and CFG {cfg.cfg_scale:g}.", "",
        noise_line(results["base"], cfg.eval_samples), "",
        "## Rows (mean ± sd over seeds)", "", *table, "",
        "## Differences (mean over seeds [95 % bootstrap interval over seeds]; vs control: paired by seed)", "",
        *diffs, "",
        "The paper's numbers (docs/paper_numbers.md) are LlamaGen on ImageNet (not comparable in scale); only "
        "directions are compared. '≈': read off the paper's figure; '—': the paper states no number or direction "
        "for that row.", "",
        "## Verdict (computed from the intervals)", "", *verdict(rows, results, control, continuation),
        *selection, "",
        "![rows](rows.png)", "",
        "## Tokenizer–generator misalignment of the base prior", "",
        f"- tokenizer reconstruction MSE on test images: {base['recon_mse']:.4f}",
        f"- MSE of images decoded from teacher-forced samples: {base['tf_sample_mse']:.4f} "
        f"({base['tf_sample_mse'] / max(base['recon_mse'], 1e-12):.1f}× the reconstruction error)",
        f"- tokens changed by decode → re-encode: {base['reencode_change']:.3f} (free-running samples) vs "
        f"{base['reencode_change_real']:.3f} (real images)", "",
        "## Networks", "",
        *network_lines(cfg, stages.user), "",
        "## Pictures", "", "![real](real.png)",
        *[f"![{n}](samples_{n}.png) {labels.get(n, n)}" for n in dict.fromkeys(shown)], "",
        *(["![curves](curves.png)", ""] if curves else []),
        "## Wall time (seconds; shared CPU)", "", *time_lines(rows, times, stages), "",
        "Every run's final policy: `<row>-seed<s>/model` (a vapi model folder) with `eval_settings.json`.", "",
    ]
    (run_dir / "table.md").write_text("\n".join([noise_line(results["base"], cfg.eval_samples), "", *table, "",
                                                 *diffs, "", *verdict(rows, results, control, continuation),
                                                 *selection]) + "\n")
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
