"""The coarse-to-fine schedule (which target positions each stage decodes) and the fills that hide
the not-yet-decoded positions: random tokens drawn from a seed, or the absorbing noise's mask
token. Numpy only; cf.py's module docstring defines both (METHOD.md §5).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


# ----------------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class Schedule:
    """Target positions of each CF part for T targets, stride s and r rounds."""

    T: int
    stride: int
    rounds: int
    skeleton: np.ndarray  # (n_skeleton,) int64, increasing: 0, s, 2s, ...
    round_positions: tuple[np.ndarray, ...]  # rounds arrays, round k = gaps with index % r == k

    @property
    def gaps(self) -> np.ndarray:
        """All gap positions, increasing."""
        return np.setdiff1d(np.arange(self.T), self.skeleton)

    def hidden_from_round(self, k: int) -> np.ndarray:
        """Positions of round k and all later rounds (not yet decoded when round k is scored)."""
        return np.sort(np.concatenate(self.round_positions[k:]))


def make_schedule(T: int, stride: int, rounds: int) -> Schedule:
    positions = np.arange(T, dtype=np.int64)
    is_skeleton = positions % stride == 0
    gaps = positions[~is_skeleton]
    gap_round = np.arange(gaps.size) % rounds
    return Schedule(
        T=T,
        stride=stride,
        rounds=rounds,
        skeleton=positions[is_skeleton],
        round_positions=tuple(gaps[gap_round == k] for k in range(rounds)),
    )


def draw_fills(seed: int, T: int, rounds: int, n_random: int, vocab_size: int) -> np.ndarray:
    """Random fill tokens, int64 (1 + rounds, n_random, T); see the module docstring.

    Drawn from a stream seeded by `seed` alone: the same for every window, batch and decoder.
    """
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab_size, size=(1 + rounds, n_random, T), dtype=np.int64)


def mask_fills(T: int, rounds: int, mask_id: int) -> np.ndarray:
    """The absorbing-noise fill, int64 (1 + rounds, 1, T): every hidden position holds the mask
    token. It is data-independent like draw_fills, and there is ONE fill realization, so a CF
    decoder with a mask fill is a single product of normalized conditionals (n_random = 1)."""
    return np.full((1 + rounds, 1, T), mask_id, dtype=np.int64)


def make_fills(seed: int, T: int, rounds: int, n_random: int, vocab_size: int,
               mask_id: int | None = None) -> np.ndarray:
    """draw_fills(seed, ...) for random fill, mask_fills(...) when mask_id is given (n_random must be 1)."""
    if mask_id is None:
        return draw_fills(seed, T, rounds, n_random, vocab_size)
    if n_random != 1:
        raise ValueError(f"a mask fill has one realization: n_random must be 1, got {n_random}")
    return mask_fills(T, rounds, mask_id)


@dataclass(frozen=True)
class CFSettings:
    """What every coarse-to-fine decode and audit is told besides the scorer and the windows: the
    vocabulary (targets and random fill lie in [0, vocab_size)), the schedule (stride, rounds) and
    the fills (n_random draws from `seed`, or with mask_id the absorbing noise's one mask fill).
    Checked where it is used (cf.decode_parts), so a bad value is named with its flag's name."""

    vocab_size: int
    stride: int = 2
    rounds: int = 2
    n_random: int = 3
    seed: int = 42
    mask_id: int | None = None

    def replace(self, **changes) -> CFSettings:
        return dataclasses.replace(self, **changes)

    def fills(self, T: int) -> np.ndarray:
        """make_fills for these settings and T targets."""
        return make_fills(self.seed, T, self.rounds, self.n_random, self.vocab_size, self.mask_id)
