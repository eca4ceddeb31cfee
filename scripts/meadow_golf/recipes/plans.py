"""A plan is a list of cells; this module has the Cell and what every experiment's plan shares.

Each experiment's own plan (which scales, weights, seeds and noises) lives in its dated folder's
plan.py, e.g. experiments/2026-04-09_matched_ablation/plan.py. A plan lists each shared cell
before the control that may be token-matched to it. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

from meadow_golf.recipes.presets import RecipeError, is_size_name, rule_flags, scale_flags
from meadow_golf.recipes.settings import Settings, check_int, check_number, is_zero


@dataclass(frozen=True)
class Cell:
    """One training run of a plan. weight is kept as written (cell names and recipes use the text)."""

    name: str
    scale: str
    weight: str
    seed: str
    matched_to: str = ""  # the shared cell a token-matched control matches; "" for none
    noise: str | None = None  # None: the recipe's NOISE

    @property
    def is_control(self) -> bool:
        return is_zero(self.weight)


def cell_name(scale: str, weight: str, seed: str, tok: bool = False) -> str:
    return f"{scale}_w{weight}_s{seed}{'_tok' if tok else ''}"


def noise_suffix(weight: str, noise: str, cdm_loss: str) -> str:
    """none for uniform (the original, so run_6's names stay), _abs for absorbing, _abs_elbo with
    CDM_LOSS=elbo. A control (w=0) has no denoising pass, so no noise."""
    if is_zero(weight) or noise != "absorbing":
        return ""
    return "_abs_elbo" if cdm_loss == "elbo" else "_abs"


def check_scales(scales: list[str], name: str = "SCALES") -> list[str]:
    if not scales:
        raise RecipeError(f"{name} is empty; choose from 5L 11L or sizes such as 3L96")
    for scale in scales:
        if scale not in ("5L", "11L") and not is_size_name(scale):
            raise RecipeError(f"{name}: unknown scale '{scale}'; choose from 5L 11L or a size <L>L<d> such as 7L384")
    return scales


def one_scale(settings: Settings, name: str, default: str) -> str:
    value = settings.get(name, default)
    check_scales(value.split(), name)
    if len(value.split()) != 1:
        raise RecipeError(f"{name}={value}: one scale only")
    return value


def check_list(name: str, values: list[str], kind: str) -> list[str]:
    for value in values:
        (check_int if kind == "int" else check_number)(name, value)
    return values


def required_list(settings, name: str, default: str, kind: str) -> list[str]:
    """The words of variable `name` (default when unset), at least one, each an int or a number."""
    values = settings.get(name, default).split()
    if not values:
        raise RecipeError(f"{name} is empty")
    return check_list(name, values, kind)


def no_token_matching(settings: Settings, plan: str) -> None:
    """The plans that compare at equal steps or equal clock only."""
    if settings.match == "tokens":
        raise RecipeError(f"MATCH=tokens: {plan} matches cells by steps or wall-clock only; "
                          "use MATCH=steps (BUDGET_SECS=0) or wallclock")


def check_unique(cells: list[Cell]) -> list[Cell]:
    """Two plan entries for one cell (a weight or seed listed twice) are refused."""
    names = [c.name for c in cells]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise RecipeError(f"a cell is planned twice ({' '.join(twice)} ): a weight or seed is listed twice")
    return cells


def plan_scales(cells: list[Cell]) -> list[str]:
    """The plan's scales, each once, in plan order."""
    return list(dict.fromkeys(c.scale for c in cells))


def cell_recipe(settings: Settings, cell: Cell, matched_steps: int | None = None) -> list[str]:
    """The flags that define a cell's run (cell.json's recipe): the scale's model, the preset's
    training flags, weight and seed, a departure from the trainer's default noise, and the length
    with the original's warmdown rules scaled. Only a departure from the trainer's default
    (uniform, plain) enters, so cells of earlier runs keep their recipe."""
    recipe = [*scale_flags(settings.preset, cell.scale), *settings.preset.train_flags(),
              "--cdm_weight", cell.weight, "--seed", cell.seed]
    noise = cell.noise or settings.noise
    if not cell.is_control and noise == "absorbing":
        recipe += ["--noise", "absorbing"]
        if settings.cdm_loss != "plain":
            recipe += ["--cdm_loss", settings.cdm_loss]
    if matched_steps is not None:
        recipe += ["--train_budget_secs", "0", "--steps", str(matched_steps), *rule_flags(matched_steps, 0)]
    else:
        recipe += ["--train_budget_secs", settings.budget_secs, "--steps", settings.steps,
                   *rule_flags(int(settings.steps), float(settings.budget_secs))]
    return recipe
