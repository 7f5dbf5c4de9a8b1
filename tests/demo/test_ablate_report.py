"""vapi.demo.ablate_report: intervals, paired differences, and each row against its own matched control."""
import re

import pytest
from vapi.demo.ablate import STUDIES, Row
from vapi.demo.ablate_report import (base_continuation, bootstrap_mean_ci, control_has_ce, convergence_check,
                                     difference_table, differences_to_base, paired_differences, prior_phrase,
                                     selection_note, tokenizer_floor, verdict)
from vapi.training.config import ObjectiveConfig


def run(fid, acc=0.9, fid_cfg=None):
    return {"fid_nocfg": fid, "accuracy_nocfg": acc, **({} if fid_cfg is None else {"fid_cfg": fid_cfg})}


def test_paired_differences_and_a_one_seed_interval():
    assert paired_differences([run(1.0), run(2.0)], [run(0.5), run(1.0)], "fid_nocfg") == [0.5, 1.0]
    assert paired_differences([run(1.0), run(2.0)], [run(0.5)], "fid_nocfg") == [0.5, 1.5]  # the base: its mean
    # the base's entries are sampling seeds, not post-training seeds: always its mean, even with as many entries
    assert differences_to_base([run(1.0), run(2.0)], [run(0.5), run(1.5)], "fid_nocfg") == [0.0, 1.0]
    m, lo, hi = bootstrap_mean_ci([3.0])
    assert m == 3.0 and lo != lo and hi != hi  # nan: no interval from one seed


def test_each_row_is_compared_with_its_own_matched_control():
    rows = [Row("base", "base", train=False), Row("control", "c"), Row("vapi", "v"),
            Row("control_beta1", "c1"), Row("vapi_beta1", "v1", control="control_beta1")]
    results = {"base": [run(0.0), run(1.0), run(2.0)], "control": [run(2.0)] * 3, "vapi": [run(2.5)] * 3,
               "control_beta1": [run(3.0)] * 3, "vapi_beta1": [run(2.75)] * 3}
    lines = {line.split(" | ")[0][2:]: line.split(" | ") for line in difference_table(rows, results, "control")[2:]}
    assert lines["v"][1].startswith("+1.500") and lines["v"][2].startswith("+0.500")  # vs base, vs control
    assert lines["v1"][1].startswith("+1.750") and lines["v1"][2].startswith("-0.250")  # vs control_beta1
    assert lines["c"][2] == "" and lines["c1"][2].startswith("+1.000")  # the study's control: not with itself


def test_sweep_rows_name_controls_that_exist_in_the_study():
    for study, rows in STUDIES.items():
        names = {r.name for r in rows}
        for r in rows:
            assert not r.train or r.control in names, (study, r.name, r.control)


def test_a_rows_own_control_is_used_without_the_studys_control():
    rows = [Row("base", "base", train=False), Row("control_beta1", "c1"), Row("vapi_beta1", "v1", control="control_beta1")]
    results = {"base": [run(1.0)], "control_beta1": [run(3.0)] * 2, "vapi_beta1": [run(2.75)] * 2}
    lines = {line.split(" | ")[0][2:]: line.split(" | ") for line in difference_table(rows, results, None)[2:]}
    assert lines["v1"][2].startswith("-0.250")


def test_verdict_checks_the_base_and_the_tokenizer_for_convergence():
    base = [run(1.0), run(1.1), run(0.9)]  # mean 1.0
    results = {"base": base, "control": [run(1.2), run(1.3), run(1.25)],  # the CE continuation: worse
               "vapi": [run(1.1), run(1.2), run(1.15)], "tokenizer": [run(0.8), run(0.7), run(0.75)]}  # better
    lines = verdict([], results, "control", "control")
    assert any(line.startswith("- Base convergence check") and "makes FID worse" in line for line in lines)
    assert any(line.startswith("- Tokenizer convergence check") and "**improves** FID" in line
               and "the tokenizer is not at its plateau" in line for line in lines)
    assert any("aim" in line and "**not reached**: the paper's FID effect is not shown" in line
               for line in lines)  # VA-π above the base
    results["tokenizer"] = [run(0.9), run(1.1), run(1.0)]
    assert any("consistent with a converged tokenizer" in line for line in verdict([], results, "control", "control"))
    del results["tokenizer"]
    assert not any("Tokenizer" in line for line in verdict([], results, "control", "control"))


def test_a_convergence_check_names_which_fid_moved():
    base = [run(1.0, fid_cfg=1.0), run(1.1, fid_cfg=1.1), run(0.9, fid_cfg=0.9)]
    worse_with_cfg = [run(1.0, fid_cfg=3.0), run(1.05, fid_cfg=3.5), run(0.95, fid_cfg=3.2)]  # unguided unchanged
    line = convergence_check(worse_with_cfg, base, "Tokenizer convergence check", "tokenizer")
    assert "makes FID worse with CFG (interval above zero; without CFG within its interval)" in line
    better_unguided = [run(0.5, fid_cfg=1.0), run(0.55, fid_cfg=1.05), run(0.45, fid_cfg=0.95)]
    line = convergence_check(better_unguided, base, "Base convergence check", "base")
    assert "**improves** FID without CFG beyond the interval; with CFG within its interval:" in line
    both_better = [run(0.5, fid_cfg=0.5), run(0.55, fid_cfg=0.55), run(0.45, fid_cfg=0.45)]
    line = convergence_check(both_better, base, "Base convergence check", "base")
    assert "**improves** FID without CFG and with CFG beyond the interval:" in line


def test_the_base_is_checked_against_a_ce_continuation_never_against_itself():
    base = [run(1.0), run(1.1), run(0.9)]
    same = [run(1.0)] * 3  # a KL-only control: the base's own weights
    results = {"base": base, "control": same, "vapi": [run(0.8), run(0.85), run(0.82)]}
    assert base_continuation(results, "control", True) == "control"
    assert base_continuation(results, "control", False) is None  # it would "confirm" convergence by construction
    lines = verdict([], results, "control", None)
    assert any(line.startswith("- Base convergence check: not run") and "`ce` row" in line for line in lines)
    assert not any("consistent with a converged base" in line for line in lines)
    results["ce"] = [run(0.7), run(0.75), run(0.72)]  # training on, on CE, improves FID: the base is undertrained
    assert base_continuation(results, "control", False) == base_continuation(results, "control", True) == "ce"
    line = next(line for line in verdict([], results, "control", "ce") if "Base convergence" in line)
    assert "the `ce` row" in line and "**improves** FID" in line and "not at its plateau" in line


def test_whether_the_control_trains_on_ce_is_read_from_its_own_row():
    kl, ce = ObjectiveConfig(prior_weight=0.0, beta=1.0), ObjectiveConfig(prior_weight=1.0, beta=0.0)
    assert control_has_ce(STUDIES["main"], "control", ce) and not control_has_ce(STUDIES["main"], "control", kl)
    assert control_has_ce(STUDIES["sweep"], "control", kl)  # the sweep's control sets the CE prior β 0.1 itself
    assert control_has_ce([Row("control", "c", {"objective.name": "ce"})], "control", kl)
    assert not control_has_ce([Row("control", "c", {"objective.prior_weight": 0.0})], "control", ce)
    main = {r.name: r for r in STUDIES["main"]}  # the paper's "CE only" is the CE fine-tune, not the KL-only control
    assert main["ce"].paper.startswith("CE only") and not main["control"].paper


def test_the_prior_term_in_words():
    assert prior_phrase(ObjectiveConfig(prior_weight=0.0, beta=1.0)) == "KL-to-reference prior β 1"
    assert prior_phrase(ObjectiveConfig(prior_weight=0.1, beta=0.0)) == "CE prior β 0.1"
    assert prior_phrase(ObjectiveConfig(prior_weight=0.1, beta=0.5)) == "CE prior β 0.1 + KL-to-reference prior β 0.5"
    assert prior_phrase(ObjectiveConfig(prior_weight=0.0, beta=0.0)) == "no prior term"


def test_a_continuation_better_without_cfg_and_worse_with_it_is_mixed():
    base = [run(1.0, fid_cfg=0.5), run(1.1, fid_cfg=0.6), run(0.9, fid_cfg=0.4)]
    results = {"base": base, "control": [run(1.0, fid_cfg=0.5)] * 3,
               "tokenizer": [run(0.8, fid_cfg=1.0), run(0.7, fid_cfg=1.1), run(0.75, fid_cfg=0.9)]}
    line = next(line for line in verdict([], results, "control", "control") if "Tokenizer" in line)
    assert "lowers FID without CFG but raises it with CFG" in line and "mixed" in line


def test_the_verdict_states_fid_with_cfg_beside_the_unguided_aim():
    base = [run(1.0, fid_cfg=0.5), run(1.1, fid_cfg=0.6), run(0.9, fid_cfg=0.4)]  # means 1.0 / 0.5
    results = {"base": base, "control": [run(1.0, fid_cfg=0.5)] * 3,
               "vapi": [run(0.8, fid_cfg=0.7), run(0.7, fid_cfg=0.8), run(0.75, fid_cfg=0.75)]}
    lines = verdict([], results, "control", None)
    assert any("aim" in line and "**reached**" in line for line in lines)  # unguided: lower than both
    line = next(line for line in lines if line.startswith("- With CFG"))
    assert "higher than the base's (+0.250 [" in line and "higher than the matched control's (+0.250 [" in line


def test_job_layout_and_job_errors():
    from vapi.demo.ablate import job_failed, job_layout
    from vapi.demo.run import DemoConfig
    assert job_layout(DemoConfig(threads=1), 9) == (1, 1)  # threads is the total: one process
    assert job_layout(DemoConfig(jobs=2, threads=4), 9) == (2, 2)
    assert job_layout(DemoConfig(jobs=8, threads=8), 3) == (3, 2)  # never more processes than runs
    user = job_failed("main/vapi seed 1", ValueError("reward.mse must be >= 0"))
    assert isinstance(user, ValueError) and str(user) == "[main/vapi seed 1] reward.mse must be >= 0"
    assert isinstance(job_failed("main/vapi seed 1", KeyError("x")), RuntimeError)  # a bug keeps its traceback


@pytest.mark.parametrize("default", [{}, {"objective.prior_weight": 1.0, "objective.beta": 0.0}])  # KL, then CE
def test_rows_set_the_prior_whole_whichever_prior_the_defaults_use(default):
    from vapi.demo.run import PostTrain, apply_overrides
    expected = {"vapi_no_prior": (0.0, 0.0), "perceptual_only": (0.0, 0.0), "mse_perceptual": (0.0, 0.0),
                "ce_beta0.1": (0.1, 0.0), "ce_beta1": (1.0, 0.0), "kl_beta0.01": (0.0, 0.01), "kl_beta1": (0.0, 1.0),
                "vapi_beta1": (1.0, 0.0), "vapi_kl1": (0.0, 1.0), "control_kl1": (0.0, 1.0)}
    for rows in STUDIES.values():
        for row in rows:
            if row.name in expected:
                post = PostTrain()
                prior = {k: v for k, v in row.overrides.items() if k.startswith("objective.")}  # PostTrain's part
                apply_overrides(post, {**default, **prior})
                assert (post.objective.prior_weight, post.objective.beta) == expected[row.name], row.name


def test_every_row_resolves_to_a_run_and_the_sweep_rows_are_what_their_labels_say(tmp_path):
    from vapi.config import to_dict
    from vapi.demo.run import DemoConfig, run_config
    cfg = DemoConfig()
    runs = {(study, row.name): run_config(cfg, row.overrides, 0, tmp_path, 32)  # an unknown key would raise
            for study, rows in STUDIES.items() for row in rows if row.train}
    sweep = {name: rc for (study, name), rc in runs.items() if study == "sweep"}
    # "the demo's": the same run as the main study's VA-π (so `reuse_runs` shares it)
    assert to_dict(sweep["vapi_kl1_lr5e-5"]) == to_dict(runs["main", "vapi"])
    assert sweep["vapi_kl1_lr5e-5"].optim.learning_rate == 5e-5
    for name in ("vapi", "control", "vapi_beta1", "vapi_kl1", "control_kl1", "vapi_kl2", "vapi_kl1_images64",
                 "vapi_kl1_steps48", "vapi_no_prior"):
        assert sweep[name].optim.learning_rate == 1e-4, name  # run at lr 1e-4 before the default moved: pinned
    assert sweep["vapi_kl1_images64"].train.per_device_batch_size == 64
    assert sweep["vapi_kl1_steps48"].train.max_steps == 48
    prior = {name: (rc.objective.prior_weight, rc.objective.beta) for name, rc in sweep.items()}
    for name in ("control_kl1", "vapi_kl1", "vapi_kl1_lr5e-5", "vapi_kl1_images64", "vapi_kl1_steps48"):
        assert prior[name] == (0.0, 1.0), name  # the KL-to-reference prior at β 1
    assert prior["vapi_kl2"] == (0.0, 2.0)
    for name, beta in (("control", 0.1), ("vapi", 0.1), ("control_beta1", 1.0), ("vapi_beta1", 1.0),
                       ("control_lr3e-5", 0.1), ("vapi_lr3e-5", 0.1)):
        assert prior[name] == (beta, 0.0), name  # the CE prior, as in the first sweep
        assert sweep[name].train.max_steps == 100, name  # the first sweep's steps
    assert sweep["vapi_lr3e-5"].optim.learning_rate == sweep["control_lr3e-5"].optim.learning_rate == 3e-5
    for name, rc in sweep.items():  # a control differs from its VA-π row in the policy term
        assert (rc.objective.policy_weight == 0) == name.startswith("control"), name
    assert (runs["main", "vapi"].train.per_device_batch_size, runs["main", "vapi"].train.max_steps) == (32, 24)
    for name in ("control_kl1", "vapi_kl1", "vapi_kl1_lr5e-5", "vapi_kl1_images64", "vapi_kl2"):
        assert sweep[name].train.max_steps == 24, name  # the shipped base's search ran at the demo's steps
    labels = {row.name: row.label for row in STUDIES["sweep"]}
    for name, rc in sweep.items():  # every lr and step count a label names is the row's
        for lr in re.findall(r"lr (\d+e-\d+)", labels[name]):
            assert rc.optim.learning_rate == float(lr), name
        for steps in re.findall(r"(\d+) steps", labels[name]):
            assert rc.train.max_steps == int(steps), name
        assert "lr " in labels[name], name  # each sweep row says its lr


def test_the_tokenizer_floor_line_puts_the_tokenizer_beside_the_base():
    first = {**run(0.09), "recon_fid": 0.034, "real_fid": 0.008, "floor_images": 1000}
    base = [first, run(0.08), run(0.07)]  # mean 0.08
    (line,) = tokenizer_floor(base)
    assert "reconstructions of 1000 training images 0.034" in line and "themselves 0.008" in line
    assert "base's samples 0.080" in line and "the tokenizer alone is +0.026, the base +0.072." in line
    assert tokenizer_floor([run(0.08)]) == [] and tokenizer_floor([]) == []  # not measured: no line
    assert line in verdict([], {"base": base}, None, None)


def test_the_selection_note_names_seeds_that_overlap_the_ones_the_defaults_were_chosen_on():
    assert selection_note(0, 3, True)[0].startswith("- Post-training seeds 0–2. The demo's post-training defaults")
    assert "on earlier bases" in selection_note(0, 3, True)[0]  # the stages changed since
    assert "the pre-registered search on them" in selection_note(0, 3, True)[0]
    assert selection_note(2, 3, True)[0].startswith("- Post-training seeds 2–4.")
    assert selection_note(0, 1, True)[0].startswith("- Post-training seed 0. ")
    assert selection_note(3, 3, True) == [] and selection_note(6, 3, True) == []  # fresh seeds: nothing inherited
    assert selection_note(0, 3, False) == []  # other stages or data: the defaults were not chosen on them


def test_the_verdict_names_the_row_it_judges():
    results = {"base": [run(1.0)] * 3, "control": [run(1.2)] * 3, "vapi": [run(1.1)] * 3}
    sweep = [Row("base", "base", train=False), Row("vapi", "VA-π, CE prior β 0.1, lr 1e-4, 100 steps")]
    assert "- Judged row: `vapi` (VA-π, CE prior β 0.1, lr 1e-4, 100 steps) against `control`." in verdict(
        sweep, results, "control", None)
    assert "- Judged row: `vapi` (VA-π) against `control`." in verdict([], results, "control", None)


def test_the_search_rows_pin_what_their_labels_say_and_share_one_control(tmp_path):
    from vapi.config import to_dict
    from vapi.demo.run import DemoConfig, run_config
    cfg = DemoConfig()
    rows = {row.name: row for row in STUDIES["search"]}
    runs = {name: run_config(cfg, row.overrides, 0, tmp_path, 32) for name, row in rows.items() if row.train}
    main_vapi = run_config(cfg, next(r for r in STUDIES["main"] if r.name == "vapi").overrides, 0, tmp_path, 32)
    # the demo's VA-π at registration (reuse_runs shares the run); if a confirmed row ever becomes the default, this
    # equality goes and the pinned rows below stay what they were
    assert to_dict(runs["vapi"]) == to_dict(main_vapi)
    settings = {name: (rc.optim.learning_rate, rc.train.per_device_batch_size, rc.train.max_steps,
                       rc.objective.context_noise, rc.objective.prior_weight, rc.objective.beta)
                for name, rc in runs.items() if name != "control"}
    assert settings == {"vapi": (5e-5, 32, 24, 0.0, 0.0, 1.0), "lr2.5e-5": (2.5e-5, 32, 24, 0.0, 0.0, 1.0),
                        "lr1e-4": (1e-4, 32, 24, 0.0, 0.0, 1.0), "images64": (5e-5, 64, 24, 0.0, 0.0, 1.0),
                        "images128": (5e-5, 128, 24, 0.0, 0.0, 1.0),
                        "steps48_lr2.5e-5": (2.5e-5, 32, 48, 0.0, 0.0, 1.0), "xi0.5": (5e-5, 32, 24, 0.5, 0.0, 1.0)}
    assert runs["control"].objective.policy_weight == 0 and (runs["control"].objective.beta,
                                                            runs["control"].objective.prior_weight) == (1.0, 0.0)
    assert all(row.control == "control" for row in rows.values() if row.train)
