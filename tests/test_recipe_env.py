"""Every environment variable a bash entry point documents is read by the recipe it runs (issue 18:
the entry points keep the same variables). For each entry and each variable in its header's
Environment block, a distinctive value is set and its effect checked on the resolved settings,
the plan's cells or their recipes; with the variable ignored each check fails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from meadow_golf.recipes.plans import cell_recipe
from meadow_golf.recipes.presets import RecipeError
from meadow_golf.recipes.settings import resolve
from recipe_run import EXPERIMENTS, plan_module

ROOT = Path(__file__).resolve().parents[1]
# entry -> (experiment, its plan function, OUT_DIR's default folder)
ENTRIES = {
    "2026-04-09_matched_ablation/run_6.sh": ("matched_ablation", "plan_ablation6"),
    "2026-04-09_matched_ablation/eval_6.sh": ("matched_ablation", "plan_ablation6"),
    "2026-04-09_matched_ablation/run_seeds.sh": ("matched_ablation", "plan_seeds"),
    "2026-04-09_matched_ablation/eval_seeds.sh": ("matched_ablation", "plan_seeds"),
    "2026-12-01_absorbing_noise/run_noise.sh": ("absorbing_noise", "plan_noise"),
    "2026-12-01_share_ratio_and_scale/run_scale.sh": ("share_ratio_and_scale", "plan_scale"),
    "2026-12-01_share_ratio_and_scale/run_wgrid.sh": ("share_ratio_and_scale", "plan_wgrid"),
}
# Read by the bash lines themselves (the interpreter) or shown only (verbosity, heartbeat).
BASH_ONLY = {"PYTHON", "VERBOSE", "HEARTBEAT_SECS"}


def documented(entry: str) -> set[str]:
    text = (ROOT / "experiments" / entry).read_text()
    block = text[text.index("# Environment"):text.index("set -euo pipefail")]
    return set(re.findall(r"\b([A-Z][A-Z0-9_]{2,})\b", block)) - BASH_ONLY


def first(cells):
    return cells[0]


# variable -> (extra environment, check(settings, cells) -> bool); a RecipeError naming the variable also counts.
CHECKS = {
    "PRESET": ({"PRESET": "h100"}, lambda s, c: s.preset.name == "h100"),
    "BACKEND": ({"BACKEND": "mlx"}, lambda s, c: s.backend == "mlx"),
    "MATCH": ({"MATCH": "tokens"}, lambda s, c: s.match == "tokens"),
    "MATCH_WEIGHT": ({"MATCH": "tokens", "MATCH_WEIGHT": "1.0"},
                     lambda s, c: all(x.matched_to.split("_")[1] == "w1.0" for x in c if x.matched_to)),
    "BUDGET_SECS": ({"BUDGET_SECS": "7"}, lambda s, c: "7" in cell_recipe(s, first(c))),
    "STEPS": ({"STEPS": "77"}, lambda s, c: "77" in cell_recipe(s, first(c))),
    "DEVICE": ({"DEVICE": "mps"}, lambda s, c: s.device == "mps"),
    "NPROC": ({"NPROC": "3"}, lambda s, c: s.nproc == 3),
    "COMPILE": ({"COMPILE": "1"}, lambda s, c: s.compile),
    "EVAL_N_SEQS": ({"EVAL_N_SEQS": "5"}, lambda s, c: s.eval_flags[:2] == ["--n_seqs", "5"]),
    "THREADS": ({"THREADS": "3"}, lambda s, c: s.threads == "3"),
    "DECODERS": ({"DECODERS": "ar"}, lambda s, c: s.decoders == "ar"),
    "CDM_LOSS": ({"CDM_LOSS": "elbo"}, lambda s, c: any(x.name.endswith("_abs_elbo") for x in c)),
    "ELBO_SAMPLES": ({"ELBO_SAMPLES": "3"}, lambda s, c: s.elbo_samples == 3),
    "SCALES": ({"SCALES": "3L96"}, lambda s, c: {x.scale for x in c} == {"3L96"}),
    "WEIGHTS": ({"WEIGHTS": "0 0.7"}, lambda s, c: {x.weight for x in c} == {"0", "0.7"}),
    "SEED": ({"SEED": "5"}, lambda s, c: {x.seed for x in c} == {"5"}),
    "SEED_SCALE": ({"SEED_SCALE": "2L48"}, lambda s, c: {x.scale for x in c} == {"2L48"}),
    "SEED_WEIGHT": ({"SEED_WEIGHT": "0.7"}, lambda s, c: {x.weight for x in c} == {"0", "0.7"}),
    "SEEDS": ({"SEEDS": "3 4"}, lambda s, c: {x.seed for x in c if not x.is_control} == {"3", "4"}),
    "CONTROL_SEEDS": ({"CONTROL_SEEDS": "4"}, lambda s, c: {x.seed for x in c if x.is_control} == {"4"}),
    "NOISES": ({"NOISES": "absorbing"}, lambda s, c: {x.noise for x in c if not x.is_control} == {"absorbing"}),
    "NOISE_SCALE": ({"NOISE_SCALE": "2L48"}, lambda s, c: {x.scale for x in c} == {"2L48"}),
    "NOISE_WEIGHTS": ({"NOISE_WEIGHTS": "0.5"}, lambda s, c: {x.weight for x in c} == {"0", "0.5"}),
    "SWEEP_SCALES": ({"SWEEP_SCALES": "2L48"}, lambda s, c: {x.scale for x in c} == {"2L48"}),
    "SWEEP_WEIGHTS": ({"SWEEP_WEIGHTS": "0.2"}, lambda s, c: {x.weight for x in c} == {"0", "0.2"}),
    "GRID_SCALE": ({"GRID_SCALE": "2L48"}, lambda s, c: {x.scale for x in c} == {"2L48"}),
    "GRID_WEIGHTS": ({"GRID_WEIGHTS": "0 0.4"}, lambda s, c: {x.weight for x in c} == {"0", "0.4"}),
    "EXTRA_SEEDS": ({"EXTRA_SEEDS": "x"}, None),  # read when the grid is planned: a bad value is refused
}


def case_list():
    for entry, (experiment, plan_fn) in ENTRIES.items():
        for var in sorted(documented(entry)):
            yield pytest.param(entry, experiment, plan_fn, var, id=f"{entry.split('/')[1]}:{var}")


@pytest.mark.parametrize("entry, experiment, plan_fn, var", list(case_list()))
def test_documented_variable_is_read(tmp_path, entry, experiment, plan_fn, var):
    data = tmp_path / "data"
    data.mkdir()
    (data / "meta.json").write_text("{}")
    env = {"PRESET": "smoke", "DATA_DIR": str(data)}
    paths = {"DATA_DIR": data, "CKPT_DIR": tmp_path / "c", "LOG_DIR": tmp_path / "l", "OUT_DIR": tmp_path / "o",
             "COMPARE_TO": data / "meta.json", "TOKENIZER": data / "t.model"}
    if var in paths:
        env[var] = str(paths[var])
        check = lambda s, c: str(paths[var]) in (str(s.data_dir), str(s.ckpt_dir), str(s.log_dir),  # noqa: E731
                                                 str(s.out_dir), s.compare_to, *s.tokenizer_flags)
    else:
        extra, check = CHECKS[var]
        env.update(extra)
    try:
        settings = resolve(env, EXPERIMENTS[experiment], "t", check_deps=False)
        cells = getattr(plan_module(experiment), plan_fn)(settings)
    except RecipeError as e:
        assert var in str(e), str(e)  # refused, naming the variable: it was read
        return
    assert check is not None and check(settings, cells), (var, settings, cells)


def test_every_variable_has_a_check():
    for entry in ENTRIES:
        assert documented(entry) <= set(CHECKS) | {"DATA_DIR", "CKPT_DIR", "LOG_DIR", "OUT_DIR", "COMPARE_TO",
                                                   "TOKENIZER"}, entry
