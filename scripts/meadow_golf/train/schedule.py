"""The schedule of a training run, read from its flags: the fraction of the run done, the LR
multiplier of each step (the original's step- and time-based warmdown) and when the EMA starts
(METHOD.md §4).
"""

from __future__ import annotations

from meadow_golf.train.flags import ORIGINAL_EMA_START_FRAC, ORIGINAL_WARMDOWN_SECS


def ema_start_step(args) -> int:
    """0-based index of the step after whose update the EMA shadow is created (the original's
    int(0.8 * steps), taken from the NOMINAL --steps, not from the time budget)."""
    return args.ema_start_step if args.ema_start_step >= 0 else int(ORIGINAL_EMA_START_FRAC * args.steps)


def ema_due(args, step_index: int) -> bool:
    """Whether the EMA acts after the update of 0-based step step_index: it is created (a copy)
    at ema_start_step and averaged in at every later step."""
    return args.ema_decay > 0 and step_index >= ema_start_step(args)


def progress(step: int, elapsed: float, args) -> float:
    """Fraction of the run done: the larger of the time and step fractions that apply."""
    fracs = []
    if args.train_budget_secs > 0:
        fracs.append(elapsed / args.train_budget_secs)
    if args.steps > 0:
        fracs.append(step / args.steps)
    return min(1.0, max(fracs))


def original_lr_multiplier(step: int, steps: int, warmdown_steps: int, remaining_secs: float | None = None,
                           warmdown_secs: float = ORIGINAL_WARMDOWN_SECS) -> float:
    """The original recipe's LR multiplier for the 0-based step `step` (METHOD.md §4).

    Step rule: 1.0, except (steps - step) / warmdown_steps for steps - warmdown_steps <= step < steps
    (no warmup; the last trained step gets 1/warmdown_steps). Time rule, when a budget runs:
    with 0 < remaining_secs < warmdown_secs, the multiplier is at most remaining_secs / warmdown_secs.
    """
    mult = 1.0
    if steps > 0 and max(steps - warmdown_steps, 0) <= step < steps:
        mult = max((steps - step) / max(warmdown_steps, 1), 0.0)
    if remaining_secs is not None and 0 < remaining_secs < warmdown_secs:
        mult = min(mult, remaining_secs / warmdown_secs)
    return mult


def schedule_lr(args, step: int, elapsed: float) -> float:
    """The LR multiplier of the 0-based step `step` after `elapsed` budget seconds (the original's rule)."""
    remaining = args.train_budget_secs - elapsed if args.train_budget_secs > 0 else None
    return original_lr_multiplier(step, args.steps, args.warmdown_steps, remaining, args.warmdown_secs)
