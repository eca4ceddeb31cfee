"""The share-ratio grid and the scale sweep: their cells and recipes (run_wgrid.sh, run_scale.sh).

    python experiments/2026-12-01_share_ratio_and_scale/plan.py run_wgrid

run_wgrid: one GRID_SCALE [11L; 3L96 on cpu; 2L32 on smoke], every weight of GRID_WEIGHTS
[0 0.1 0.15 0.2 0.3 0.5 0.7 1.0] at SEED [1337]; once the grid has trained, EXTRA_SEEDS [42]
("" = none) of the control and of the best shared weight (the lowest final_val_bpb of the grid,
read from its results.json). run_scale: every size of SWEEP_SCALES, the control and every weight
of SWEEP_WEIGHTS [0.3], at every seed of SEEDS [1337 42]. Both share CKPT_DIR, so a cell both
plan is trained once. DECODERS [ar,cf_published,cf_valid,cf_valid_mix].
"""

from __future__ import annotations

import sys
from pathlib import Path

from meadow_golf.recipes import cells as cellstate
from meadow_golf.recipes.cli import main as recipes_main
from meadow_golf.recipes.plans import Cell, cell_name, check_list, check_scales, check_unique, no_token_matching, one_scale, required_list
from meadow_golf.recipes.presets import RecipeError, default_by_preset
from meadow_golf.recipes.settings import Settings, check_int, is_zero, resolve
from meadow_golf.recipes.steps import Recipe

HERE = Path(__file__).resolve().parent
DECODERS = "ar,cf_published,cf_valid,cf_valid_mix"
RUNS = "share_ratio_and_scale"


def plan_wgrid(s: Settings) -> list[Cell]:
    scale = one_scale(s, "GRID_SCALE", default_by_preset(s.preset, "11L", "3L96", "2L32"))
    weights = required_list(s, "GRID_WEIGHTS", "0 0.1 0.15 0.2 0.3 0.5 0.7 1.0", "number")
    seed = check_int("SEED", s.get("SEED", "1337"))
    check_list("EXTRA_SEEDS", s.words("EXTRA_SEEDS", "42"), "int")
    no_token_matching(s, "plan_wgrid")
    return check_unique([Cell(cell_name(scale, w, seed), scale, w, seed) for w in weights])


def plan_wgrid_seeds(s: Settings, grid: list[Cell]) -> tuple[str, list[Cell]]:
    """After the grid trained: EXTRA_SEEDS of the control and of the best weight (as cell.json wrote it)."""
    best = cellstate.best_weight([s.ckpt_dir / c.name for c in grid])
    scale, seed = grid[0].scale, grid[0].seed
    extra = []
    for other in s.words("EXTRA_SEEDS", "42"):
        if other != seed:
            extra += [Cell(cell_name(scale, best, other), scale, best, other),
                      Cell(cell_name(scale, "0", other), scale, "0", other)]
    return best, check_unique(grid + extra)


def plan_scale(s: Settings) -> list[Cell]:
    scales = check_scales(s.get("SWEEP_SCALES", default_by_preset(
        s.preset, "5L256 7L384 9L448 11L512 13L640", "2L32 2L64 3L96 4L128", "2L32 3L48")).split(), "SWEEP_SCALES")
    weights = required_list(s, "SWEEP_WEIGHTS", "0.3", "number")
    for w in weights:
        if is_zero(w):
            raise RecipeError(f"SWEEP_WEIGHTS: {w} is the control, which the sweep adds at every size and seed")
    seeds = required_list(s, "SEEDS", "1337 42", "int")
    no_token_matching(s, "plan_scale")
    plan = []
    for scale in scales:
        for seed in seeds:
            plan += [Cell(cell_name(scale, w, seed), scale, w, seed) for w in weights]
            plan.append(Cell(cell_name(scale, "0", seed), scale, "0", seed))
    return check_unique(plan)


def run_wgrid(env, out) -> None:
    """the share-ratio grid at one size, then the extra seeds of its best weight and the control"""
    s = resolve(env, HERE, "wgrid", decoders=DECODERS, runs=RUNS)
    grid = plan_wgrid(s)
    scale = grid[0].scale
    r = Recipe(s, grid, out)
    r.print_table(f"run_wgrid (the share-ratio grid at {scale})")
    r.train()
    best, r.plan = plan_wgrid_seeds(s, grid)
    r.say(f"[plan ] best shared weight of the grid (lowest final_val_bpb): w={best}")
    r.say(f"[plan ] seed cells: {r.names}")
    r.train()
    r.evaluate()
    r.summarize(f"Share-ratio grid (PRESET={s.preset.name}, {scale}, MATCH={s.match})")


def run_scale(env, out) -> None:
    """the scale sweep: every size, the control and every SWEEP_WEIGHTS weight, at every seed"""
    s = resolve(env, HERE, "scale", decoders=DECODERS, runs=RUNS)
    r = Recipe(s, plan_scale(s), out)
    weights = " ".join(s.get("SWEEP_WEIGHTS", "0.3").split())
    r.print_table(f"run_scale (the scale sweep, w in {{{weights}}} against the control)")
    r.train()
    r.evaluate()
    r.summarize(f"Scale sweep (PRESET={s.preset.name}, w in {{{weights}}}, MATCH={s.match})")


RECIPES = {"run_wgrid": run_wgrid, "run_scale": run_scale}


def main(argv=None) -> int:
    return recipes_main(RECIPES, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
