"""The noise ablation's cells and recipe (run_noise.sh): uniform against absorbing noise, matched.

    python experiments/2026-12-01_absorbing_noise/plan.py run_noise

At one NOISE_SCALE [11L; 3L96 on cpu; 2L32 on smoke], every weight of NOISE_WEIGHTS [0.3 1.0]
under every noise of NOISES [uniform absorbing], and one control (no denoising pass, so no noise),
at SEED [1337]. Absorbing cells are named with `_abs` (`_abs_elbo` with CDM_LOSS=elbo) and are
evaluated with the diffusion ELBO too (ELBO_SAMPLES [8]). Run once per corpus: the default folders
carry the data folder's name. DECODERS [ar,cf_published,cf_valid,bidir_l2r,bidir_confidence].
"""

from __future__ import annotations

import sys
from pathlib import Path

from meadow_golf.model.noise import NOISES
from meadow_golf.recipes.cli import main as recipes_main
from meadow_golf.recipes.plans import Cell, cell_name, check_unique, no_token_matching, noise_suffix, one_scale, required_list
from meadow_golf.recipes.presets import RecipeError, default_by_preset
from meadow_golf.recipes.settings import Settings, check_int, is_zero, resolve
from meadow_golf.recipes.steps import Recipe

HERE = Path(__file__).resolve().parent
# One denoising pass per cell: the valid ladder of its bidirectional pass (left to right and the
# confidence order, METHOD.md §8) next to ar and the CF decoders.
DECODERS = "ar,cf_published,cf_valid,bidir_l2r,bidir_confidence"


def plan_noise(s: Settings) -> list[Cell]:
    scale = one_scale(s, "NOISE_SCALE", default_by_preset(s.preset, "11L", "3L96", "2L32"))
    weights = required_list(s, "NOISE_WEIGHTS", "0.3 1.0", "number")
    noises = s.get("NOISES", "uniform absorbing").split()
    if not noises:
        raise RecipeError("NOISES is empty")
    for noise in noises:
        if noise not in NOISES:
            raise RecipeError(f"NOISES: unknown noise '{noise}'; choose {' or '.join(NOISES)}")
    seed = check_int("SEED", s.get("SEED", "1337"))
    no_token_matching(s, "plan_noise")
    plan = []
    for noise in noises:
        for w in weights:
            if is_zero(w):
                raise RecipeError(f"NOISE_WEIGHTS: {w} is the control, which the plan adds once")
            plan.append(Cell(cell_name(scale, w, seed) + noise_suffix(w, noise, s.cdm_loss), scale, w, seed, "", noise))
    plan.append(Cell(cell_name(scale, "0", seed), scale, "0", seed))  # no denoising pass: no noise
    return check_unique(plan)


def run_noise(env, out) -> None:
    """uniform vs absorbing noise, matched: train, evaluate, summarize"""
    s = resolve(env, HERE, "noise", decoders=DECODERS, elbo_samples="8", runs="absorbing_noise", runs_per_data=True)
    r = Recipe(s, plan_noise(s), out)
    r.print_table("run_noise (uniform vs absorbing noise, matched)")
    r.train()
    r.evaluate()
    r.summarize(f"Noise ablation (PRESET={s.preset.name}, data {s.data_dir.name}, MATCH={s.match})")


RECIPES = {"run_noise": run_noise}


def main(argv=None) -> int:
    return recipes_main(RECIPES, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
