"""The matched ablation's cells and recipes (run_6.sh, eval_6.sh, run_seeds.sh, eval_seeds.sh, quickstart.sh).

    python experiments/2026-04-09_matched_ablation/plan.py run_6      # what run_6.sh runs

run_6 / eval_6: SCALES [5L 11L] x WEIGHTS [0 0.3 1.0] at SEED [1337]; with MATCH=tokens each
control (suffix _tok) matches the w=MATCH_WEIGHT [0.3] cell of its scale. run_seeds / eval_seeds:
SEED_SCALE [11L] at SEED_WEIGHT [0.3] with SEEDS [1337 42 2024 7 100], controls with CONTROL_SEEDS
[1337 42 2024] ("" = none). quickstart: one SCALE, CDM_WEIGHT against its control (quickstart.sh
sets the rest). Shared cells come before the control that may be matched to them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from meadow_golf.recipes.cli import main as recipes_main
from meadow_golf.recipes.plans import Cell, cell_name, check_list, check_scales, check_unique, one_scale, required_list
from meadow_golf.recipes.presets import RecipeError
from meadow_golf.recipes.settings import Settings, check_int, check_number, is_zero, resolve
from meadow_golf.recipes.steps import Recipe

HERE = Path(__file__).resolve().parent


def plan_ablation6(s: Settings) -> list[Cell]:
    scales = check_scales(s.get("SCALES", "5L 11L").split())
    weights = required_list(s, "WEIGHTS", "0 0.3 1.0", "number")
    seed = check_int("SEED", s.get("SEED", "1337"))
    tok = s.match == "tokens"
    if tok:
        if s.match_weight not in weights:
            raise RecipeError(f"MATCH=tokens: the controls match the w={s.match_weight} cells (MATCH_WEIGHT), "
                              f"but WEIGHTS='{' '.join(weights)}' has none")
        if is_zero(s.match_weight):
            raise RecipeError(f"MATCH_WEIGHT={s.match_weight}: the matched shared run needs a weight > 0")
    plan = []
    for scale in scales:
        plan += [Cell(cell_name(scale, w, seed), scale, w, seed) for w in weights if not is_zero(w)]
        matched = cell_name(scale, s.match_weight, seed) if tok else ""
        plan += [Cell(cell_name(scale, w, seed, tok), scale, w, seed, matched) for w in weights if is_zero(w)]
    return check_unique(plan)


def plan_seeds(s: Settings) -> list[Cell]:
    scale = one_scale(s, "SEED_SCALE", "11L")
    weight = check_number("SEED_WEIGHT", s.get("SEED_WEIGHT", "0.3"))
    if is_zero(weight):
        raise RecipeError(f"SEED_WEIGHT={weight}: the seed runs are the shared model (weight > 0)")
    seeds = check_list("SEEDS", s.get("SEEDS", "1337 42 2024 7 100").split(), "int")
    controls = check_list("CONTROL_SEEDS", s.words("CONTROL_SEEDS", "1337 42 2024"), "int")
    tok = s.match == "tokens"
    plan = [Cell(cell_name(scale, weight, seed), scale, weight, seed) for seed in seeds]
    for seed in controls:
        matched = cell_name(scale, weight, seed if seed in seeds else seeds[0]) if tok else ""
        plan.append(Cell(cell_name(scale, "0", seed, tok), scale, "0", seed, matched))
    return check_unique(plan)


def title(s: Settings, what: str) -> str:
    return f"{what} (PRESET={s.preset.name}, BACKEND={s.backend}, MATCH={s.match})"


def run_6(env, out) -> None:
    """train the 6-run matched ablation"""
    s = resolve(env, HERE, "ablation6")
    r = Recipe(s, plan_ablation6(s), out)
    r.print_table("run_6 (train the 6-run matched ablation)")
    r.train()
    r.summarize(title(s, "Matched ablation") + ": training")


def eval_6(env, out) -> None:
    """evaluate the 6-run matched ablation"""
    s = resolve(env, HERE, "ablation6")
    r = Recipe(s, plan_ablation6(s), out)
    r.print_table("eval_6 (evaluate the 6-run matched ablation)")
    r.evaluate()
    r.summarize(title(s, "Matched ablation"))


def run_seeds(env, out) -> None:
    """train the seed verification"""
    s = resolve(env, HERE, "seeds")
    r = Recipe(s, plan_seeds(s), out)
    r.print_table("run_seeds (train the seed verification)")
    r.train()
    r.summarize(title(s, "Seed verification") + ": training")


def eval_seeds(env, out) -> None:
    """evaluate the seed verification"""
    s = resolve(env, HERE, "seeds")
    r = Recipe(s, plan_seeds(s), out)
    r.print_table("eval_seeds (evaluate the seed verification)")
    r.evaluate()
    r.summarize(title(s, "Seed verification"))


def quickstart(env, out) -> None:
    """shared w=CDM_WEIGHT against its control at one scale, trained, evaluated, summarized"""
    weight = check_number("CDM_WEIGHT", env.get("CDM_WEIGHT") or "0.3")
    if is_zero(weight):
        raise RecipeError(f"CDM_WEIGHT={weight}: the shared run needs a weight > 0 (the w=0 control always runs)")
    env = {**env, "SCALES": env.get("SCALE") or "5L", "WEIGHTS": f"{weight} 0", "MATCH_WEIGHT": weight}
    s = resolve(env, HERE, "quickstart")
    s.dir_vars = {key: "RUN_DIR" for key in s.dir_vars}  # quickstart.sh makes all three from RUN_DIR
    r = Recipe(s, plan_ablation6(s), out)
    r.print_table(f"quickstart (shared w={weight} vs control w=0, one scale)")
    r.train()
    r.evaluate()
    r.summarize(f"Quickstart: shared w={weight} vs causal-only control (PRESET={s.preset.name}, "
                f"{env['SCALES']}, {s.budget_secs} s each, MATCH={s.match})")


RECIPES = {"run_6": run_6, "eval_6": eval_6, "run_seeds": run_seeds, "eval_seeds": eval_seeds, "quickstart": quickstart}


def main(argv=None) -> int:
    return recipes_main(RECIPES, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
