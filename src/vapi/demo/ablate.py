"""`vapi ablate STUDY`: the paper's tables at demo scale, each row over seeds, against the base and a matched control.

Studies (rows are overrides of the demo's `post` settings; every row shares update mode, batch, lr, schedule, steps
and data order with VA-π unless it varies them):
  main    Table 1: base, the matched control (VA-π, policy term off), plain CE (same mode: the paper's "CE only" and
          the base's convergence check), VA-π, VA-π β = 0, and the baselines: STE, post-trained tokenizer,
          free-running GRPO (its reward: the perceptual net's class probability, never the evaluation net;
          16 images/step because each is generated G times)
  reward  Table 3: perceptual only, MSE + perceptual, CE only, the prior term only (= the control), MSE + perceptual +
          prior (= VA-π), MSE + prior
  prior   the β figure: β ∈ {0.01, 0.1, 1} with the CE prior, and with a KL-to-reference prior instead
  noise   Table 5: ξ ∈ {0, 0.25, 0.5, 0.75, 0.95}
  sweep   the search behind the demo's defaults: CE prior β 0.1 and 1, β 0.1 at lr 3e-5, β = 0 (on the 450-step
          base); KL prior β 1 at lr 1e-4 and 5e-5, with 64 images/step and 48 steps, β 2 (on the 7200-step base);
          each VA-π setting beside its own matched control (the same setting with the policy term off; `Row.control`)
  search  the pre-registered search on the shipped base (docs/search-28800.md): lr 2.5e-5 / 5e-5 / 1e-4, 64 and 128
          images/step, 48 steps at lr 2.5e-5, ξ 0.5; run with eval_samples=5000
The base is evaluated with `eval_seeds` sampling seeds (the evaluation noise); every post-trained model with the
shared `eval_seed`. Every run's final policy is saved as a vapi model folder with its evaluation settings. The
perceptual term stands in for the paper's LPIPS (see `objectives.perceptual`).

    vapi ablate main                 # runs/ablate-main-<time>/report.md
    vapi ablate noise seeds=3 post.steps=50
    vapi ablate main --rows base,control,vapi
    vapi ablate main tokenizer_path=TOK prior_path=GPT data.root=TRAIN data.test_root=TEST   # the user's own
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vapi.config import load_config, save_config, to_dict
from vapi.demo.ablate_report import write_study_report
from vapi.demo.run import DemoConfig, Stages, datasets, post_train, prepare, run_config, stage_key
from vapi.errors import one_line
from vapi.models.weights_io import load_pretrained, save_pretrained


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    overrides: dict = field(default_factory=dict)
    train: bool = True  # False: the base, evaluated as it is
    expect: str = ""  # the paper's direction for FID vs the base: "lower" | "higher" | "" (none stated)
    paper: str = ""  # the paper's number(s) for this row, as written there; "" = not transcribed
    control: str = "control"  # the row it is compared with, paired by seed: its matched control


CONTROL = {"objective.policy_weight": 0.0}
# the prior term, set whole in every row that varies it: rows stay what they say whichever prior the defaults use
NO_PRIOR = {"objective.prior_weight": 0.0, "objective.beta": 0.0}  # neither the CE prior nor the KL-to-reference


def ce_prior(beta: float) -> dict:
    return {"objective.prior_weight": beta, "objective.beta": 0.0}


def kl_prior(beta: float) -> dict:
    return {"objective.prior_weight": 0.0, "objective.beta": beta}


LR_1E4 = {"optim.learning_rate": 1e-4}
LR_2_5E5 = {"optim.learning_rate": 2.5e-5}
# the first sweep's settings (lr 1e-4, 100 steps; it ran on the 450-step tokenizer's base, not the shipped one)
FIRST_SWEEP = {**LR_1E4, "train.max_steps": 100}
# the demo's settings when the search on the shipped base was registered, pinned so its rows keep their meaning
SEARCH = {"optim.learning_rate": 5e-5, "train.per_device_batch_size": 32, "train.max_steps": 24,
          "objective.context_noise": 0.0, **kl_prior(1.0)}

# The paper's numbers (LlamaGen-XXL C2I on ImageNet, FID / IS without CFG unless said) as transcribed in
# docs/paper_numbers.md from the authors' project page; "≈": read off a figure, not printed in the source.
BASE = Row("base", "base prior", train=False, paper="FID 14.36, IS 86.55 (CFG: 2.37, 252.16)")
CE_ONLY = "CE only: FID 14.17, IS 88.78"
VAPI = "FID 7.65, IS 116.70 (CFG: 2.28, 273.53), 25 min"
# a CE fine-tune in VA-π's update mode: the paper's "CE only" row, and a continuation of the base on its own objective
# (the base's convergence check: with a KL-to-reference prior the matched control is the base itself)
CE_ROW = Row("ce", "CE fine-tune (same update mode)", {"objective.name": "ce"}, paper=CE_ONLY)

STUDIES: dict[str, list[Row]] = {
    "main": [
        BASE,
        Row("control", "matched control (VA-π, policy term off)", CONTROL),
        CE_ROW,
        Row("vapi", "VA-π", {}, expect="lower", paper=VAPI),
        Row("vapi_no_prior", "VA-π, β = 0", NO_PRIOR, expect="higher",
            paper="MSE + LPIPS, no prior: FID 38.63, IS 48.14 (\"diverges\")"),
        Row("ste", "STE (Gumbel-softmax through the decoder)", {"objective.name": "ste"}, expect="lower",
            paper="FID 11.46, IS 102.21 (CFG: 4.17), 381 min"),
        Row("tokenizer", "post-trained tokenizer (decoder)", {"objective.name": "tokenizer"},
            paper="FID 14.26 (18 min); longer: 22.99 (207 min)"),
        Row("grpo", "free-running GRPO (classifier reward on the perceptual net, 16 images/step)",
            {"objective.name": "grpo", "reward.mse": 0.0, "reward.perceptual": 0.0, "reward.classifier": 1.0,
             "reward.classifier_path": "demo", "train.per_device_batch_size": 16},
            paper="AR-GRPO, LlamaGen-XL, CFG only: FID 2.79 → 3.63, 149 min"),
    ],
    "reward": [
        BASE,
        Row("perceptual_only", "perceptual only", {"reward.mse": 0.0, **NO_PRIOR},
            expect="higher", paper="LPIPS only: FID 38.76, IS 49.78"),
        Row("mse_perceptual", "MSE + perceptual", NO_PRIOR, expect="higher",
            paper="MSE + LPIPS: FID 38.63, IS 48.14"),
        CE_ROW,
        Row("control", "prior term only (matched control)", CONTROL),
        Row("vapi", "MSE + perceptual + prior (VA-π)", {}, expect="lower", paper=VAPI),
        Row("mse_ce", "MSE + prior (not in the paper)", {"reward.perceptual": 0.0}),
    ],
    "prior": [
        BASE,
        Row("control", "matched control (the demo's prior, policy term off)", CONTROL),
        *[Row(f"ce_beta{b:g}", f"CE prior, β = {b:g}", ce_prior(b), expect=e, paper=f)
          for b, e, f in ((0.01, "higher", "≈ 22 (smallest β, unlabelled)"), (0.1, "lower", VAPI),
                          (1.0, "lower", "≈ 10.9"))],
        *[Row(f"kl_beta{b:g}", f"KL-to-reference prior, β = {b:g}",
              kl_prior(b), expect=e, paper=f)
          for b, e, f in ((0.01, "higher", "≈ 22 (smallest β, unlabelled)"), (0.1, "lower", "≈ 8.5"),
                          (1.0, "lower", "≈ 12.8"))],
    ],
    "noise": [
        BASE,
        Row("control", "matched control (ξ 0, policy term off)", CONTROL),
        *[Row(f"xi{x:g}", f"ξ = {x:g}", {"objective.context_noise": x},
              paper=f"T2I GenEval {g} (LlamaGen-XL; base 0.306)")
          for x, g in ((0.0, 0.302), (0.25, 0.315), (0.5, 0.339), (0.75, 0.332), (0.95, 0.329))],
    ],
    # the search behind the demo's defaults: each VA-π setting beside its own matched control (the same setting
    # with the policy term off). The CE-prior rows pin the first sweep's lr and steps (FIRST_SWEEP); the KL rows
    # searched the shipped base around the KL prior at β 1, whose control (the base's weights: the KL term alone has
    # no gradient at the reference) is the same for every lr, batch, β and step count
    "sweep": [
        BASE,
        Row("control", "matched control (CE prior β 0.1, lr 1e-4, 100 steps)",
            {**CONTROL, **ce_prior(0.1), **FIRST_SWEEP}),
        Row("vapi", "VA-π, CE prior β 0.1, lr 1e-4, 100 steps", {**ce_prior(0.1), **FIRST_SWEEP}, expect="lower",
            paper=VAPI),
        Row("control_beta1", "matched control (CE prior β 1, lr 1e-4, 100 steps)",
            {**CONTROL, **ce_prior(1.0), **FIRST_SWEEP}),
        Row("vapi_beta1", "VA-π, CE prior β 1, lr 1e-4, 100 steps", {**ce_prior(1.0), **FIRST_SWEEP},
            control="control_beta1"),
        Row("control_lr3e-5", "matched control (CE prior β 0.1, lr 3e-5, 100 steps)",
            {**CONTROL, **ce_prior(0.1), "optim.learning_rate": 3e-5, "train.max_steps": 100}),
        Row("vapi_lr3e-5", "VA-π, CE prior β 0.1, lr 3e-5, 100 steps",
            {**ce_prior(0.1), "optim.learning_rate": 3e-5, "train.max_steps": 100}, control="control_lr3e-5"),
        Row("control_kl1", "matched control (KL prior β 1, lr 1e-4)", {**CONTROL, **kl_prior(1.0), **LR_1E4}),
        Row("vapi_kl1", "VA-π, KL prior β 1, lr 1e-4", {**kl_prior(1.0), **LR_1E4}, control="control_kl1"),
        Row("vapi_kl1_lr5e-5", "VA-π, KL prior β 1, lr 5e-5 (the demo's)",
            {**kl_prior(1.0), "optim.learning_rate": 5e-5}, control="control_kl1"),
        Row("vapi_kl1_images64", "VA-π, KL prior β 1, lr 1e-4, 64 images/step",
            {**kl_prior(1.0), **LR_1E4, "train.per_device_batch_size": 64}, control="control_kl1"),
        Row("vapi_kl2", "VA-π, KL prior β 2, lr 1e-4", {**kl_prior(2.0), **LR_1E4}, control="control_kl1"),
        Row("vapi_kl1_steps48", "VA-π, KL prior β 1, lr 1e-4, 48 steps",
            {**kl_prior(1.0), **LR_1E4, "train.max_steps": 48}, control="control_kl1"),
        Row("vapi_no_prior", "VA-π, β = 0, lr 1e-4, 100 steps", {**NO_PRIOR, **FIRST_SWEEP}, expect="higher"),
    ],
    # the pre-registered search on the shipped 28800-step base (docs/search-28800.md): what the studies do not vary
    # (lr, images per step, steps) and one ξ; those and the prior pinned; with the KL prior alone the control has no
    # gradient, so one matched control (the base's weights) serves every row
    "search": [
        BASE,
        Row("control", "matched control (KL prior β 1, policy term off: the base's weights)", {**SEARCH, **CONTROL}),
        Row("vapi", "VA-π, lr 5e-5, 32 images/step, 24 steps, ξ 0 (the demo's)", SEARCH, expect="lower"),
        Row("lr2.5e-5", "VA-π, lr 2.5e-5", {**SEARCH, **LR_2_5E5}, expect="lower"),
        Row("lr1e-4", "VA-π, lr 1e-4", {**SEARCH, **LR_1E4}, expect="lower"),
        Row("images64", "VA-π, lr 5e-5, 64 images/step", {**SEARCH, "train.per_device_batch_size": 64},
            expect="lower"),
        Row("images128", "VA-π, lr 5e-5, 128 images/step", {**SEARCH, "train.per_device_batch_size": 128},
            expect="lower"),
        Row("steps48_lr2.5e-5", "VA-π, lr 2.5e-5, 48 steps",
            {**SEARCH, **LR_2_5E5, "train.max_steps": 48}, expect="lower"),
        Row("xi0.5", "VA-π, lr 5e-5, ξ 0.5", {**SEARCH, "objective.context_noise": 0.5}, expect="lower"),
    ],
}


def select_rows(study: str, names: list[str] | None) -> list[Row]:
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; choose from {', '.join(STUDIES)}")
    rows = STUDIES[study]
    if not names:
        return rows
    known = {r.name: r for r in rows}
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"study {study}: unknown row {bad[0]!r}; rows: {', '.join(known)}")
    return [known[n] for n in names]


def save_model(policy, folder: Path, cfg, seed: int, overrides: dict, tokenizer=None) -> None:
    """The run's final policy (and tokenizer, when the method trained it) as vapi model folders, with the settings
    they were evaluated with."""
    save_pretrained(policy, folder / "model", overwrite=True)
    if tokenizer is not None:
        save_pretrained(tokenizer, folder / "tokenizer", overwrite=True)
    (folder / "eval_settings.json").write_text(json.dumps({
        "tokenizer": "the study's tokenizer stage (see study.json)", "eval_samples": cfg.eval_samples,
        "eval_seed": cfg.eval_seed, "cfg_scales": [1.0, cfg.cfg_scale], "class_balanced": True,
        "post_training_seed": seed, "overrides": overrides}, indent=1))


RUN_CACHE_FORMAT = 4  # bump when what a cached run holds (eval.json's metrics) changes


def run_key(setup, overrides: dict, seed: int) -> str:
    """What a run's result depends on: its resolved RunConfig (not where it writes), the data and the stages (their
    keys and what they measured), the seed, and the evaluation settings (with the evaluator's reward). Rows of
    different studies with the same key are the same run (`reuse_runs`)."""
    cfg = setup.cfg
    rc = to_dict(run_config(cfg, overrides, seed, Path("."), cfg.data.image_size))
    for name in ("output_dir", "progress"):
        rc["train"].pop(name)
    stages = [json.loads((Path(d) / "metrics.json").read_text()) if (Path(d) / "metrics.json").is_file() else str(d)
              for d in setup.dirs.values()]  # what the stages measured: a rebuilt stage is another stage
    return stage_key(RUN_CACHE_FORMAT, rc, setup.keys, stages, setup.data_id, cfg.post.reward, seed,
                     cfg.eval_samples, cfg.eval_seed, cfg.cfg_scale)


def _store(out: Path, cached: Path) -> None:
    """Copy a finished run folder into the run cache (assembled aside, then renamed in: never half-written)."""
    tmp = cached.with_name(f".{cached.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(out, tmp)
    try:
        tmp.rename(cached)
    except OSError:  # another process stored the same run first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not cached.exists():
            raise


def train_row(setup, row: Row, seed: int, out: Path) -> tuple[dict, float, object, object]:
    """Post-train and evaluate one row × seed into `out`; with `reuse_runs`, copy an identical earlier run instead.
    Returns (metrics, train seconds, policy, tokenizer or None)."""
    cfg, ev = setup.cfg, setup.evaluator
    # the resolved method (a study's defaults could choose it too), not the row's own overrides
    trains_tokenizer = run_config(cfg, row.overrides, seed, out, cfg.data.image_size).objective.name == "tokenizer"
    cached = Path(cfg.cache_dir) / "runs" / run_key(setup, row.overrides, seed) if cfg.reuse_runs else None
    if cached is not None and (cached / "run.json").exists():
        shutil.copytree(cached, out, dirs_exist_ok=True)
        seconds = json.loads((out / "run.json").read_text())["train_seconds"]
        vq = load_pretrained(out / "tokenizer").eval() if trains_tokenizer else None
        print(f"  reused {cached}", flush=True)
        return json.loads((out / "eval.json").read_text()), seconds, load_pretrained(out / "model").eval(), vq
    policy, vq, seconds = post_train(setup, row.overrides, seed, out)
    vq = vq if trains_tokenizer else None
    metrics = setup.stages.timed("eval", lambda: ev(policy, with_alignment=True, vq=vq))
    (out / "eval.json").write_text(json.dumps(metrics, indent=1))
    save_model(policy, out, cfg, seed, row.overrides, vq)
    (out / "run.json").write_text(json.dumps({"train_seconds": seconds, "row": row.name, "seed": seed}))
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        _store(out, cached)
    return metrics, seconds, policy, vq


_WORKER: dict = {}  # a job process's own Setup


def _start_worker(cfg, threads: int, known: tuple[dict, dict]) -> None:
    cfg = copy.deepcopy(cfg)
    cfg.threads, cfg.progress, cfg.rebuild = threads, False, False  # the parent's prepare built the stages
    _WORKER["setup"] = prepare(cfg, known)  # only loads them; the parent's data identity and stage keys


def _run_job(study: str, row_name: str, seed: int, out: str) -> tuple[dict, float, float, object]:
    """One row × seed in a job process: (metrics, train seconds, eval seconds, the seed-0 sample grid or None)."""
    setup = _WORKER["setup"]
    row = next(r for r in STUDIES[study] if r.name == row_name)
    eval_before = setup.stages.times.get("eval", 0.0)
    metrics, seconds, policy, vq = train_row(setup, row, seed, Path(out))
    grid = setup.evaluator.grid(policy, vq=vq) if seed == setup.cfg.first_seed else None
    return metrics, seconds, setup.stages.times.get("eval", 0.0) - eval_before, grid


def _eval_base(seed: int) -> tuple[dict, float]:
    """The base prior's evaluation with sampling seed eval_seed + seed, in a job process: (metrics, seconds)."""
    setup = _WORKER["setup"]
    start = time.perf_counter()
    metrics = setup.evaluator(setup.base, with_alignment=(seed == 0), seed=setup.cfg.eval_seed + seed)
    return metrics, time.perf_counter() - start


def job_failed(what: str, e: Exception) -> Exception:
    """A job's error, naming the run: a user-caused one stays one line (ValueError), anything else keeps its
    traceback (the cause)."""
    message = one_line(e)
    return ValueError(f"[{what}] {message}") if message is not None else RuntimeError(f"[{what}] failed: {e!r}")


def job_layout(cfg, n_runs: int) -> tuple[int, int]:
    """(job processes, torch threads each): `jobs` 0 = one per CPU core this process may use, at most one per run;
    `threads`, when set, is the total (never more processes than threads)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    total = cfg.threads or cores
    jobs = max(1, min(cfg.jobs or cores, n_runs, total))
    return jobs, max(1, total // jobs)


def seed_range(cfg) -> range:
    """The post-training seeds: `seeds` of them from `first_seed`."""
    return range(cfg.first_seed, cfg.first_seed + cfg.seeds)


def run_study(cfg, study: str, rows: list[str] | None = None, folder_prefix: str = "") -> Path:
    """Run every row × seed of `study` on the demo's stages, or the user's (cfg: a demo.DemoConfig); returns the
    report path. With `jobs` > 1 the runs go to that many processes (each its own torch threads); every run's
    result depends only on its row and seed, so the study is the same whatever the order they finish in."""
    selected = select_rows(study, rows)
    run_dir = Path(cfg.out_dir) / time.strftime(f"{folder_prefix or 'ablate-' + study}-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    setup = prepare(cfg)
    ev, stages = setup.evaluator, setup.stages
    (run_dir / "study.json").write_text(json.dumps({"study": study, "rows": [r.name for r in selected],
                                                    "stages": {k: str(v) for k, v in setup.dirs.items()},
                                                    "keys": setup.keys}, indent=1))
    # seed-major: an interrupted study still has paired rows for its first seeds
    runs = [(row, seed) for seed in seed_range(cfg) for row in selected if row.train]
    jobs, threads = job_layout(cfg, len(runs))
    results: dict[str, list[dict]] = {}
    grids = {"base": ev.grid(setup.base)}
    curves, times = {}, {}
    save = lambda: (run_dir / "results.json").write_text(json.dumps(  # noqa: E731
        {"results": results, "times": stages.times, "train_seconds": times, "cached": stages.cached,
         "user_stages": stages.user}, indent=1))

    def record(row, seed, metrics, seconds, grid):
        times.setdefault(row.name, []).append(seconds)  # per run; stages.times keeps the stages' own (a row may
        # share a stage's name: the `tokenizer` method)
        results.setdefault(row.name, []).append(metrics)
        curves.setdefault(row.name, []).append(run_dir / f"{row.name}-seed{seed}" / "metrics.jsonl")
        if grid is not None:
            grids[row.name] = grid
        save()

    # the base, always: its evaluation noise over sampling seeds, and the reference of every row
    if jobs == 1:
        results["base"] = [stages.timed("eval", lambda s=s: ev(setup.base, with_alignment=(s == 0),
                                                                 seed=cfg.eval_seed + s)) for s in range(cfg.eval_seeds)]
        save()
        for row, seed in runs:
            print(f"[{study}/{row.name} seed {seed}] {cfg.post.steps} steps", flush=True)
            metrics, seconds, policy, vq = train_row(setup, row, seed, run_dir / f"{row.name}-seed{seed}")
            record(row, seed, metrics, seconds, ev.grid(policy, vq=vq) if seed == cfg.first_seed else None)
    else:  # the base's evaluations are jobs too, first in the queue: no core waits
        print(f"[{study}] {len(runs)} runs and {cfg.eval_seeds} base evaluations in {jobs} processes × {threads} "
              f"torch thread(s)", flush=True)
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_start_worker,
                                 initargs=(cfg, threads, (setup.data_id, setup.keys))) as pool:
            base = [pool.submit(_eval_base, s) for s in range(cfg.eval_seeds)]
            futures = [pool.submit(_run_job, study, row.name, seed, str(run_dir / f"{row.name}-seed{seed}"))
                       for row, seed in runs]
            results["base"] = []
            for s, future in enumerate(base):
                try:
                    metrics, seconds = future.result()
                except Exception as e:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise job_failed(f"{study}/base evaluation seed {s}", e) from e
                results["base"].append(metrics)
                stages.times["eval"] = stages.times.get("eval", 0.0) + seconds
            save()
            for (row, seed), future in zip(runs, futures):  # recorded in order: seed-major, as with one job
                try:
                    metrics, seconds, eval_seconds, grid = future.result()
                except Exception as e:  # stop the queue; say which run failed
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise job_failed(f"{study}/{row.name} seed {seed}", e) from e
                print(f"[{study}/{row.name} seed {seed}] done ({seconds:.0f} s)", flush=True)
                stages.times["eval"] = stages.times.get("eval", 0.0) + eval_seconds
                record(row, seed, metrics, seconds, grid)
    return write_study_report(run_dir, cfg, study, selected, results, grids, curves, stages, times,
                              ev.test_images[:80], ev.num_classes)


def rewrite_report(run_dir: str | Path) -> Path:
    """Write report.md again from a study folder's results.json (e.g. after an interrupted study: the rows that
    finished). Sample grids are those already written; the evaluation is not rerun."""

    run_dir = Path(run_dir)
    cfg = load_config(DemoConfig, run_dir / "config.yaml")
    study = json.loads((run_dir / "study.json").read_text())
    saved = json.loads((run_dir / "results.json").read_text())
    results = saved["results"]
    for row in select_rows(study["study"], study["rows"]):  # rows an interruption left without a results entry
        found = sorted(run_dir.glob(f"{row.name}-seed*/eval.json"))
        if row.name not in results and found:
            results[row.name] = [json.loads(f.read_text()) for f in found]
    rows = [r for r in select_rows(study["study"], study["rows"]) if r.name in results]
    stages = Stages(cfg.cache_dir)
    stages.times, stages.cached, stages.user = saved["times"], saved["cached"], saved.get("user_stages", {})
    curves = {r.name: sorted(run_dir.glob(f"{r.name}-seed*/metrics.jsonl")) for r in rows if r.train}
    test = datasets(cfg.data)[1]
    real = torch.stack([test[i][0] for i in range(min(80, len(test)))])
    return write_study_report(run_dir, cfg, study["study"], rows, results, {}, curves, stages,
                              saved.get("train_seconds", {}), real, test.num_classes)
