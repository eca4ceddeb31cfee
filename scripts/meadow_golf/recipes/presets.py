"""The presets of the recipes as a table, the model flags of each scale, and the original's rules scaled.

Scales: 5L and 11L are the original ablation's two sizes (under cpu and smoke, smaller stand-ins:
the table below). A size name <L>L<d>, e.g. 7L384, is that size on every preset: --num_layers L
--model_dim d, the preset's heads and bigram width, and --xsa_last_n max(1, (L+1)//3) (2 at 5L
and 4 at 11L, as the original).

| PRESET | "5L" trains                       | "11L" trains                      | seq  | tokens/step | per cell          | eval (eval_cf.py)         | data, device     |
|--------|-----------------------------------|-----------------------------------|------|-------------|-------------------|---------------------------|------------------|
| h100   | 5L d=256 bigram 128 XSA 2         | 11L d=512 bigram 128 XSA 4        | 1024 | 64 x 1024   | 540 s             | 500 random windows x 1024 | data/v4096, cuda |
| mac    | 5L d=256 bigram 128 XSA 2         | 11L d=512 bigram 128 XSA 4        | 1024 | 32 x 1024   | 900 s             | 200 random windows x 1024 | data/v4096, auto |
| cpu    | 3L d=128 bigram 64 XSA 1          | 4L d=192 bigram 64 XSA 2          | 256  | 16 x 256    | 300 s             | 64 random windows x 256   | shakespeare, cpu |
| smoke  | 2L d=32 4/2 heads bigram 16 XSA 1 | 3L d=48 4/2 heads bigram 16 XSA 1 | 32   | 8 x 32      | 4 steps, no clock | 8 random windows x 32     | shakespeare, cpu |

h100 follows every rule of the original recipe that train_cdm.py implements (METHOD.md §4): vocab-4096
data, 540 s on the original's clock, --steps 9999, 64 x 1024 tokens per step, validation every 500
steps on the first 1,000,000 validation tokens, eval on 500 windows of 1024 targets. The other
presets apply the same rules, scaled (rule_flags): the step-based warmdown covers the same share of
STEPS as the original's 1000 of 9999, the time-based warmdown the same share of BUDGET_SECS as the
original's 80 of 540 s (cpu: 44.4 s of 300 s; mac: 133.3 s of 900 s). Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The original recipe's nominal step count, its step warmdown, its budget and its time warmdown.
ORIGINAL_STEPS, ORIGINAL_WARMDOWN_STEPS = 9999, 1000
ORIGINAL_BUDGET_SECS, ORIGINAL_WARMDOWN_SECS = 540, 80
SIZE_NAME = re.compile(r"^[1-9][0-9]*L[1-9][0-9]*$")


@dataclass(frozen=True)
class Preset:
    """One row of the table: defaults and the flags every cell of the preset trains and evaluates with."""

    name: str
    flags_5l: str
    flags_11l: str
    size_heads: str  # heads of a size-named scale ("" = the trainer's default)
    size_bigram_dim: int
    data_dir: str  # relative to the repository root
    device: str
    budget_secs: str
    steps: str
    threads: str  # "" = the library default
    compile: str
    seq_len: int
    batch_tokens: int
    val_tokens: int
    val_batch_size: int | None  # None: the trainer's default (not part of the recipe)
    io_flags: tuple[str, ...]
    eval_seq_len: int
    eval_n_seqs: int
    eval_batch: int
    by_size: int  # index into default_by_preset's (h100/mac, cpu, smoke) triples

    def train_flags(self) -> list[str]:
        """Part of every cell's recipe (cell.json)."""
        flags = ["--seq_len", str(self.seq_len), "--batch_tokens", str(self.batch_tokens),
                 "--val_tokens", str(self.val_tokens)]
        if self.val_batch_size is not None:
            flags += ["--val_batch_size", str(self.val_batch_size)]
        return flags


_ORIGINAL_5L = "--num_layers 5 --model_dim 256 --bigram_dim 128 --xsa_last_n 2"
_ORIGINAL_11L = "--num_layers 11 --model_dim 512 --bigram_dim 128 --xsa_last_n 4"
PRESETS = {
    "h100": Preset("h100", _ORIGINAL_5L, _ORIGINAL_11L, "", 128, "data/v4096", "cuda", "540", "9999", "", "1",
                   1024, 65536, 1000000, None, ("--val_every", "500", "--save_every", "500", "--log_every", "50"),
                   1024, 500, 16, 0),
    "mac": Preset("mac", _ORIGINAL_5L, _ORIGINAL_11L, "", 128, "data/v4096", "auto", "900", "9999", "", "0",
                  1024, 32768, 262144, None, ("--val_every", "200", "--save_every", "200", "--log_every", "20"),
                  1024, 200, 8, 0),
    "cpu": Preset("cpu", "--num_layers 3 --model_dim 128 --bigram_dim 64 --xsa_last_n 1",
                  "--num_layers 4 --model_dim 192 --bigram_dim 64 --xsa_last_n 2", "", 64, "data/shakespeare", "cpu",
                  "300", "9999", "1", "0", 256, 4096, 65536, None,
                  ("--val_every", "200", "--save_every", "50", "--log_every", "10"), 256, 64, 16, 1),
    "smoke": Preset("smoke", "--num_layers 2 --model_dim 32 --num_heads 4 --num_kv_heads 2 --bigram_dim 16 --xsa_last_n 1",
                    "--num_layers 3 --model_dim 48 --num_heads 4 --num_kv_heads 2 --bigram_dim 16 --xsa_last_n 1",
                    "--num_heads 4 --num_kv_heads 2", 16, "data/shakespeare", "cpu", "0", "4", "1", "0",
                    32, 256, 2048, 16, ("--val_every", "0", "--save_every", "2", "--log_every", "2"), 32, 8, 8, 2),
}


class RecipeError(ValueError):
    """Settings or cells a recipe cannot use: reported as one `error:` line before any compute."""


def is_size_name(scale: str) -> bool:
    return bool(SIZE_NAME.match(scale))


def scale_flags(preset: Preset, scale: str) -> list[str]:
    """The model flags of a scale under the preset."""
    if scale == "5L":
        return preset.flags_5l.split()
    if scale == "11L":
        return preset.flags_11l.split()
    if not is_size_name(scale):
        raise RecipeError(f"unknown scale '{scale}'; choose 5L, 11L or a size <L>L<d> such as 7L384")
    layers, dim = scale.split("L")
    xsa = max(1, (int(layers) + 1) // 3)
    return ["--num_layers", layers, "--model_dim", dim, *preset.size_heads.split(),
            "--bigram_dim", str(preset.size_bigram_dim), "--xsa_last_n", str(xsa)]


def spec_scale(scale: str) -> str:
    """What a scale is in the original ablation (METHOD.md §3)."""
    if scale == "5L":
        return "5 layers, d=256 (~4.3 M params)"
    if scale == "11L":
        return "11 layers, d=512 (~28.4 M params)"
    layers, dim = scale.split("L")
    return f"{layers} layers, d={dim} (this size on every preset)"


def default_by_preset(preset: Preset, big: str, cpu: str, smoke: str) -> str:
    return (big, cpu, smoke)[preset.by_size]


def rule_flags(steps: int, budget_secs: float) -> list[str]:
    """The original's warmdown rules scaled to a cell's length: the step warmdown is the share
    1000/9999 of the step cap (rounded half up), the time warmdown 80/540 of the budget, written
    as C's %.6g (what the bash recipes' awk printed, so cell.json stays byte-identical)."""
    warmdown_steps = int(steps * ORIGINAL_WARMDOWN_STEPS / ORIGINAL_STEPS + 0.5)
    warmdown_secs = budget_secs * ORIGINAL_WARMDOWN_SECS / ORIGINAL_BUDGET_SECS
    return ["--warmdown_steps", str(warmdown_steps), "--warmdown_secs", f"{warmdown_secs:.6g}"]
