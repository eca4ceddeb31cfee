"""What state a cell is in, its cell.json, and its summary lines (the JSON side of the recipes).

A *cell* is one training run of an experiment in its own folder under CKPT_DIR: the trainer's
step checkpoints, final_model.npz and results.json; the evaluation's eval_cf.json; and
cell.json, written before the first training call, which records what the cell is (name,
scale, backend, preset, how a control was matched) and the recipe flags it trains with.
Logs are never parsed. Standard library only (no torch import: these calls are cheap).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from meadow_golf.recipes.presets import RecipeError

CELL_JSON = "cell.json"
RESULTS_JSON = "results.json"
EVAL_JSON = "eval_cf.json"
FINAL_NPZ = "final_model.npz"
# Step checkpoints of either backend (train_cdm.py: .pt, train_cdm_mlx.py: .safetensors).
STEP_SUFFIXES = (".pt", ".safetensors")
# cell.json fields that must agree between the plan and an existing cell (others are labels).
IDENTITY_FIELDS = ("backend", "recipe")
# Label corrections a claim applies to an existing cell of the same identity: (field, stored,
# now). The bash recipes used to record MATCH=wallclock for cells trained with no clock
# (BUDGET_SECS=0), where the step cap decided; it now records `steps`. The recipe (with its
# --train_budget_secs 0) is unchanged, so such a cell is the same run and is kept, relabelled.
RELABELS = (("match", "wallclock", "steps"),)


class CellError(RecipeError):
    """A cell that cannot be used as asked (reported as one `error:` line)."""


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CellError(f"{path}: unreadable JSON ({type(e).__name__}: {e})") from None
    if not isinstance(value, dict):
        raise CellError(f"{path}: expected a JSON object")
    return value


def write_json_atomic(path: Path, payload: dict) -> None:
    """Temporary file in the same folder, fsync, rename: a failure leaves no partial cell.json and
    no temporary file. (challenge_format.atomic_write_bytes does the same, but imports numpy.)"""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(payload, indent=2) + "\n")
            f.flush()
            os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# ----------------------------------------------------------------------------- state


def step_checkpoints(cell: Path) -> list[Path]:
    """Resumable step checkpoints (step_<N>.*, not step_final)."""
    found = []
    for p in cell.glob("step_*"):
        stem, suffix = p.name.split(".", 1)[0], "." + p.name.split(".", 1)[-1]
        if suffix in STEP_SUFFIXES and stem[len("step_"):].isdigit():
            found.append(p)
    return sorted(found, key=lambda p: int(p.name.split(".", 1)[0][len("step_"):]))


def load_results(cell: Path) -> dict:
    res = read_json(cell / RESULTS_JSON)
    missing = [k for k in ("final_val_bpb", "steps", "tokens_seen", "train_seconds", "config") if k not in res]
    if missing:
        raise CellError(f"{cell / RESULTS_JSON}: not a trainer results.json (missing {', '.join(missing)})")
    return res


def train_status(cell: Path) -> str:
    """done: results.json and final_model.npz; partial: a step checkpoint to resume; new: neither."""
    if (cell / RESULTS_JSON).is_file():
        load_results(cell)
        if not (cell / FINAL_NPZ).is_file():
            raise CellError(f"{cell}: results.json present but {FINAL_NPZ} missing; remove results.json to retrain")
        return "done"
    return "partial" if step_checkpoints(cell) else "new"


def eval_status(cell: Path, *, seq_len: int, n_seqs: int | None, full_val: bool, decoders: list[str],
                elbo_samples: int = 0) -> str:
    """done: eval_cf.json newer than results.json, same protocol, every decoder (and the ELBO with
    elbo_samples samples per window when asked); stale: otherwise; new: none."""
    if train_status(cell) != "done":
        raise CellError(f"{cell}: not trained yet (no results.json); run the matching run_*.sh first")
    path = cell / EVAL_JSON
    if not path.is_file():
        return "new"
    ev = read_json(path)
    proto = ev.get("protocol", {})
    same_protocol = (proto.get("seq_len") == seq_len
                     and proto.get("mode") == ("full_val" if full_val else "random")
                     and (full_val or proto.get("n_seqs") == n_seqs))
    has_decoders = all(name in ev.get("decoders", {}) for name in decoders)
    if elbo_samples:
        has_decoders = has_decoders and (ev.get("elbo") or {}).get("samples_per_window") == elbo_samples
    fresh = path.stat().st_mtime >= (cell / RESULTS_JSON).stat().st_mtime
    return "done" if same_protocol and has_decoders and fresh else "stale"


def recipe_diff(old: list[str], new: list[str]) -> str:
    """The flags that differ, as `--flag old -> new`; the whole lists when they are not flag/value pairs."""

    def pairs(flags: list[str]) -> dict[str, str] | None:
        if len(flags) % 2 or not all(f.startswith("--") for f in flags[::2]):
            return None
        return dict(zip(flags[::2], flags[1::2]))

    a, b = pairs(old), pairs(new)
    if a is None or b is None:
        return f"{' '.join(old)} -> {' '.join(new)}"
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]
    return ", ".join(f"{k} {a.get(k, '(none)')} -> {b.get(k, '(none)')}" for k in keys)


def claim(cell: Path, meta: dict, dir_var: str = "CKPT_DIR") -> str:
    """Write cell.json for a new cell, or check that an existing one describes the same run.
    dir_var: the setting the user gave the cells' folder by (the quickstart's RUN_DIR)."""
    path = cell / CELL_JSON
    if path.is_file():
        old = read_json(path)
        for field in IDENTITY_FIELDS:
            if old.get(field) != meta[field]:
                what = (recipe_diff(old.get(field) or [], meta[field]) if field == "recipe"
                        else f"{old.get(field)} -> {meta[field]}")
                raise CellError(f"{cell}: was set up with other settings ({field}: {what}); "
                                f"remove the folder or choose another {dir_var}")
        fixed = dict(old)
        for field, stored, now in RELABELS:
            if old.get(field) == stored and meta.get(field) == now:
                fixed[field] = now
        if fixed != old:
            write_json_atomic(path, fixed)
        return "kept"
    if (cell / RESULTS_JSON).is_file() or step_checkpoints(cell):
        raise CellError(f"{cell}: holds a run without {CELL_JSON} (not made by these scripts); "
                        f"remove it or choose another {dir_var}")
    write_json_atomic(path, meta)
    return "written"


def match_steps(shared: Path, batch_tokens: int) -> int:
    """Steps that give a control the shared run's training tokens at batch_tokens per step."""
    if train_status(shared) != "done":
        raise CellError(f"{shared}: the shared run to match is not finished (no results.json)")
    tokens = int(load_results(shared)["tokens_seen"])
    if batch_tokens <= 0 or tokens % batch_tokens:
        raise CellError(f"{shared}: tokens_seen {tokens} is not a multiple of batch_tokens {batch_tokens}")
    if tokens == 0:
        raise CellError(f"{shared}: the shared run saw no tokens")
    return tokens // batch_tokens


# ----------------------------------------------------------------------------- lines


def best_weight(cells: list[Path]) -> str:
    """The shared weight (cdm_weight > 0) whose cell has the lowest final_val_bpb, as the recipe
    wrote it in cell.json (so that the seed cells it plans are named like the grid's). Every cell
    must be trained: a best weight over part of the grid would depend on which cells finished."""
    best = None
    for cell in cells:
        res = load_results(cell) if (cell / RESULTS_JSON).is_file() else None
        if res is None:
            raise CellError(f"{cell}: not trained yet (no results.json); the best weight needs the whole grid")
        weight = float(res["cdm_weight"])
        if weight <= 0:
            continue
        meta = read_json(cell / CELL_JSON)
        recipe = meta.get("recipe", [])
        written = recipe[recipe.index("--cdm_weight") + 1] if "--cdm_weight" in recipe else repr(weight)
        key = (float(res["final_val_bpb"]), weight)
        if best is None or key < best[0]:
            best = (key, written)
    if best is None:
        raise CellError("best-weight: no shared cell (cdm_weight > 0) among the cells given")
    return best[1]


def fmt_bpb(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def train_line(cell: Path, prefix: str) -> str:
    res = load_results(cell)
    meta = read_json(cell / CELL_JSON) if (cell / CELL_JSON).is_file() else {}
    matched = f" (token-matched to {meta['matched_to']})" if meta.get("matched_to") else ""
    return (f"{prefix} {cell.name} steps:{res['steps']} tokens:{res['tokens_seen']:,} "
            f"train_s:{res['train_seconds']:.1f} final_val_bpb:{fmt_bpb(res['final_val_bpb'])}{matched}")


def eval_line(cell: Path, prefix: str) -> str:
    ev = read_json(cell / EVAL_JSON)
    decoders = ev.get("decoders", {})

    def bpb(name: str) -> str:
        return fmt_bpb(decoders[name]["bpb"]) if name in decoders else "n/a"

    # passed is None where eval_cf made no check (random windows: see eval_cf.consistency_check).
    consistency = ev.get("consistency", {}).get("passed")
    check = {True: "PASS", False: "FAIL"}.get(consistency, "not_run")
    return (f"{prefix} {cell.name} ar:{bpb('ar')} cf_published:{bpb('cf_published')} "
            f"(NOT a valid code length) cf_valid:{bpb('cf_valid')} "
            f"windows:{ev.get('windows', {}).get('count', 'n/a')} consistency:{check}")
