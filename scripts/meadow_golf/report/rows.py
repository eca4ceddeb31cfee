"""Loading: a trainer's results.json (+ eval_cf.json, eval_heldout.json, cell.json next to it) -> one
flat row; rows of one configuration -> a seed group. Used by report.summarize (the CLI).

Next to results.json, read when present: eval_cf.json (eval_cf.py's scores; final_model.eval_cf.json,
eval_cf.py's own default name, is accepted too), eval_heldout.json (the `ar` decoder on windows
disjoint from the trainer's validation stream: eval_cf.py --full_val --val_skip; its BPB is the row's
`ar_heldout`), and cell.json (written by the orchestrators: scale label, matching). Each eval's
per-window file (<eval json stem>.windows.npz) is read and checked against the JSON's own totals.

A run is named by the real size of its model (layers and width from results.json, e.g. 3L-d128
under PRESET=cpu); "stands in for" is the original ablation's scale it replaces (cell.json: 5L or
11L), which is what cells are compared by. A control's label says how its length was matched: by
wall clock (the original), by a step cap with no clock (step-matched: BUDGET_SECS=0; older
cell.json files say wallclock there and are read as steps), or by the tokens of a shared run
(token-matched).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np

from meadow_golf.eval import cf

EVAL_NAMES = ("eval_cf.json", "final_model.eval_cf.json")
HELDOUT_NAME = "eval_heldout.json"
# The bidirectional decoders of a random-fill cell re-scored with ONE fill (eval_cf.py --n_random 1),
# so that they compare evenly with a mask-fill cell's (one fill by construction).
ONE_FILL_NAME = "eval_cf_fill1.json"
CELL_JSON = "cell.json"
CF_HEADER = "CF BPB (published; NOT a valid code length)"
# (row key, column header) of the BPB metrics, in table order.
METRICS = (
    ("ar", "Pure-AR BPB"),
    ("cf_published", CF_HEADER),
    ("cf_valid", "cf_valid BPB"),
    ("val_bpb", "val_bpb (trainer)"),
)
# Metrics beyond the runs table's: the held-out windows' Pure-AR.
EXTRA_METRICS = (("ar_heldout", "Pure-AR BPB, held-out windows"),)
METRIC_HEADER = dict(METRICS + EXTRA_METRICS)
# Decoders whose per-window NLL eval_cf.py stores (the val_bpb metric has no windows).
WINDOW_METRICS = ("ar", "cf_published", "cf_valid")
# The valid code lengths a cell's best decoder is chosen from, as cf.DECODERS declares them (the
# fill mixtures are valid too); cf_published is never a candidate (METHOD.md §6).
VALID_DECODERS = cf.decoders_where(valid=True)
# The bidirectional pass's own codes (METHOD.md §8), shown with the ELBO in their own table.
BIDIR_DECODERS = cf.decoders_where(family="bidir")
NO_WINDOWS = "unavailable (no per-window file)"


class InputError(ValueError):
    """Bad input (reported as one `error:` line)."""


# ----------------------------------------------------------------------------- loading


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # ValueError: bad JSON or bad UTF-8
        raise InputError(f"{path}: unreadable JSON ({type(e).__name__}: {e})") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: expected a JSON object")
    return value


def weight_text(w: float) -> str:
    """0 -> '0', 0.3 -> '0.3', 1.0 -> '1.0' (the original table's spelling)."""
    if w == 0:
        return "0"
    return f"{w:.1f}" if round(w, 1) == w else f"{w:g}"


def params_text(n) -> str:
    if n is None:
        return "—"
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def load_row(path: Path) -> dict:
    """One run: results.json (+ eval_cf.json, cell.json next to it) -> a flat row."""
    path = path / "results.json" if path.is_dir() else path
    if not path.is_file():
        raise InputError(f"{path}: not found")
    res = read_json(path)
    missing = [k for k in ("final_val_bpb", "steps", "tokens_seen", "config") if k not in res]
    if missing:
        raise InputError(f"{path}: not a trainer results.json (missing {', '.join(missing)})")
    cell = path.parent
    meta = read_json(cell / CELL_JSON) if (cell / CELL_JSON).is_file() else {}
    model, train = res["config"].get("model", {}), res["config"].get("train", {})
    weight = float(res.get("cdm_weight", train.get("cdm_weight", 0.0)))
    control = weight == 0
    # The denoising corruption (train_cdm.py --noise, --cdm_loss); a control has no denoising pass.
    noise = None if control else train.get("noise", "uniform")
    cdm_loss = None if control else train.get("cdm_loss", "plain")
    # The real size of the model trained (the CPU presets train smaller stand-ins), and the
    # original ablation's scale name it stands in for (cell.json; the key of every comparison).
    size = f"{model.get('num_layers', '?')}L-d{model.get('model_dim', '?')}"
    scale = meta.get("scale") or f"{model.get('num_layers', '?')}L"
    match = effective_match(meta.get("match"), train.get("train_budget_secs")) if control else None
    row = {
        "cell": cell.name, "results": str(path), "scale": scale, "size": size, "stands_in_for": scale,
        "cdm_weight": weight, "control": control,
        "match": match, "matched_to": meta.get("matched_to") or None, "seed": train.get("seed"),
        "params": res.get("params"), "steps": res["steps"], "tokens_seen": res["tokens_seen"],
        "train_seconds": res.get("train_seconds"), "val_bpb": res["final_val_bpb"],
        "model": model, "seq_len": train.get("seq_len"), "batch_tokens": train.get("batch_tokens"),
        "train_budget_secs": train.get("train_budget_secs"), "step_cap": train.get("steps"),
        "val_tokens": train.get("val_tokens"),
        "noise": noise, "cdm_loss": cdm_loss,
        **{key: None for key in dict.fromkeys(("ar", "cf_published", "cf_valid") + VALID_DECODERS)},
        "ar_heldout": None, "one_fill": None, "eval": None, "elbo": None, "eval_heldout": None, "_heldout_windows": None,
        "valid_bpb": {},  # every valid decoder the eval ran -> its BPB (best_valid chooses among them)
        "_windows": None,  # per-window arrays (load_windows); kept out of the summary JSON
    }
    label = f"{size} w={weight_text(weight)}" + noise_text(noise, cdm_loss)
    if control:
        label += {"tokens": " (control, token-matched)", "steps": " (control, step-matched)"}.get(match, " (control)")
    row["run"] = label
    corruption = "D3PM" if noise == "uniform" else "absorbing-mask" + (" (ELBO loss)" if cdm_loss == "elbo" else "")
    row["objective"] = "AR only" if control else f"AR + {weight_text(weight)} × {corruption}"
    for name in EVAL_NAMES:
        if (cell / name).is_file():
            ev = read_json(cell / name)
            decoders = ev.get("decoders")
            if not isinstance(decoders, dict):
                raise InputError(f"{cell / name}: not an eval_cf.py JSON (no decoders)")
            for key in ("ar", "cf_published", "cf_valid"):
                if key in decoders:
                    if not isinstance(decoders[key], dict) or "bpb" not in decoders[key]:
                        raise InputError(f"{cell / name}: decoder {key} has no bpb")
                    row[key] = decoders[key]["bpb"]
            for key in VALID_DECODERS:
                # A decoder the eval itself labels invalid is never a candidate, whatever its name.
                if isinstance(decoders.get(key), dict) and decoders[key].get("valid_code_length", True) is True:
                    if "bpb" not in decoders[key]:
                        raise InputError(f"{cell / name}: decoder {key} has no bpb")
                    row["valid_bpb"][key] = decoders[key]["bpb"]
                    row[key] = decoders[key]["bpb"]
            elbo = ev.get("elbo")
            if isinstance(elbo, dict):
                if "bpb" not in elbo or "bpb_se" not in elbo:
                    raise InputError(f"{cell / name}: elbo has no bpb / bpb_se")
                row["elbo"] = {"bpb": elbo["bpb"], "se": elbo["bpb_se"], "samples_per_window": elbo.get("samples_per_window"),
                               "label": "upper bound (a valid code length in expectation)"}
            proto = ev.get("protocol", {})
            row["eval"] = {"json": str(cell / name), "mode": proto.get("mode"), "windows": proto.get("n_seqs"),
                           "seq_len": proto.get("seq_len"), "fill": proto.get("fill"),
                           "n_random": proto.get("n_random"),
                           "consistency_passed": ev.get("consistency", {}).get("passed"),
                           "per_window_file": None}
            if ev.get("per_window_file") is not None:
                row["_windows"] = load_windows(cell / name, ev, decoders)
                row["eval"]["per_window_file"] = str(cell / ev["per_window_file"])
            break
    if (cell / HELDOUT_NAME).is_file():
        load_heldout(row, cell / HELDOUT_NAME)
    if (cell / ONE_FILL_NAME).is_file():
        load_one_fill(row, cell / ONE_FILL_NAME)
    return row


def load_one_fill(row: dict, path: Path) -> None:
    """eval_cf_fill1.json: the bidirectional decoders with one fill realization (--n_random 1)."""
    ev = read_json(path)
    decoders, proto = ev.get("decoders"), ev.get("protocol", {})
    if not isinstance(decoders, dict) or proto.get("n_random") != 1:
        raise InputError(f"{path}: not an eval_cf.py JSON of one fill (--n_random 1)")
    row["one_fill"] = {"json": str(path), "windows_sha256": ev.get("windows", {}).get("sha256"),
                       "bpb": {d: decoders[d]["bpb"] for d in ("ar",) + BIDIR_DECODERS
                               if isinstance(decoders.get(d), dict) and "bpb" in decoders[d]}}


def load_heldout(row: dict, path: Path) -> None:
    """eval_heldout.json: the `ar` decoder on windows disjoint from the trainer's validation stream
    (--val_skip past it), with its per-window file."""
    ev = read_json(path)
    decoders = ev.get("decoders")
    if not isinstance(decoders, dict) or not isinstance(decoders.get("ar"), dict) or "bpb" not in decoders["ar"]:
        raise InputError(f"{path}: not an eval_cf.py JSON with the ar decoder")
    proto = ev.get("protocol", {})
    row["ar_heldout"] = decoders["ar"]["bpb"]
    row["eval_heldout"] = {"json": str(path), "mode": proto.get("mode"), "windows": proto.get("n_seqs"),
                           "seq_len": proto.get("seq_len"), "val_skip": proto.get("val_skip"),
                           "targets": decoders["ar"].get("tokens")}
    if ev.get("per_window_file") is not None:
        row["_heldout_windows"] = load_windows(path, ev, {"ar": decoders["ar"]})


def noise_text(noise: str | None, cdm_loss: str | None) -> str:
    """The label's noise: nothing for the original's uniform noise (and for a control)."""
    if noise in (None, "uniform"):
        return ""
    return f" {noise}" + (" elbo-loss" if cdm_loss == "elbo" else "")


def architecture(model: dict) -> dict:
    """The model without its mask-token row: an absorbing-noise model and its control share every
    other hyperparameter, and the control is the reference of both noises (the mask row is an
    input-only embedding row, never predicted; METHOD.md §8)."""
    return {k: v for k, v in model.items() if k != "mask_token"}


def effective_match(match: str | None, train_budget_secs) -> str | None:
    """The matching that decided the cell's length. Cells claimed before the `steps` label existed
    say "wallclock" although no clock ran (train_budget_secs 0): the step cap decided, so "steps"."""
    if match == "wallclock" and train_budget_secs is not None and float(train_budget_secs) == 0:
        return "steps"
    return match


def load_windows(eval_path: Path, ev: dict, decoders: dict) -> dict:
    """The per-window arrays of an eval JSON, checked against the JSON's own totals so that a file
    from another run cannot slip in: {"offsets", "seed", "bytes", "nll": {decoder: (N,)}}."""
    name = ev["per_window_file"]
    if not isinstance(name, str) or Path(name).name != name:
        raise InputError(f"{eval_path}: per_window_file must be a file name next to it, got {name!r}")
    path = eval_path.parent / name
    if not path.is_file():
        raise InputError(f"{path}: per-window file named by {eval_path.name} not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {key: z[key] for key in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"{path}: unreadable per-window file ({type(e).__name__}: {e})") from None
    missing = [k for k in ("offsets", "seed", "bytes") if k not in arrays]
    if missing:
        raise InputError(f"{path}: missing {', '.join(missing)}")
    n_bytes = arrays["bytes"]
    n = n_bytes.shape[0] if n_bytes.ndim == 1 else -1
    if n < 1 or arrays["offsets"].shape != (n,) or arrays["seed"].shape != ():
        raise InputError(f"{path}: offsets and bytes must be (N,) arrays of one length and seed a scalar")
    if np.any(n_bytes <= 0):
        raise InputError(f"{path}: every window must have a positive byte count")
    out = {"offsets": arrays["offsets"].astype(np.int64), "seed": int(arrays["seed"]),
           "bytes": n_bytes.astype(np.float64), "nll": {}}
    for key in dict.fromkeys(WINDOW_METRICS + VALID_DECODERS):
        if key not in decoders:
            continue
        nll = arrays.get(f"nll_{key}")
        if nll is None or nll.shape != (n,) or not np.all(np.isfinite(nll)):
            raise InputError(f"{path}: nll_{key} must be a finite (N,) array, N = {n}")
        total, total_bytes = decoders[key].get("nll_sum"), decoders[key].get("bytes")
        if total_bytes is not None and int(n_bytes.sum()) != total_bytes:
            raise InputError(f"{path}: bytes sum to {int(n_bytes.sum())}, {eval_path.name} says {total_bytes}")
        if total is not None and not math.isclose(math.fsum(nll), total, rel_tol=1e-9, abs_tol=1e-9):
            raise InputError(f"{path}: nll_{key} sums to {math.fsum(nll)!r}, {eval_path.name} says {total!r}")
        out["nll"][key] = nll.astype(np.float64)
    elbo = ev.get("elbo")
    if isinstance(elbo, dict) and "nll_elbo" in arrays:
        nll = arrays["nll_elbo"]
        if nll.shape != (n,) or not np.all(np.isfinite(nll)):
            raise InputError(f"{path}: nll_elbo must be a finite (N,) array, N = {n}")
        if "nll_sum" in elbo and not math.isclose(math.fsum(nll), elbo["nll_sum"], rel_tol=1e-9, abs_tol=1e-9):
            raise InputError(f"{path}: nll_elbo sums to {math.fsum(nll)!r}, {eval_path.name} says {elbo['nll_sum']!r}")
        out["nll"]["elbo"] = nll.astype(np.float64)
        if "elbo_terms" in arrays:
            out["elbo_terms"] = arrays["elbo_terms"].astype(np.float64)
    return out


# ----------------------------------------------------------------------------- groups and tests


def group_key(row: dict) -> str:
    """Same configuration up to the seed. A token-matched control's step cap follows its
    matched run, so it is not part of that key."""
    key = {k: row[k] for k in ("scale", "cdm_weight", "match", "model", "seq_len", "batch_tokens",
                               "train_budget_secs", "val_tokens", "noise", "cdm_loss")}
    if row["match"] != "tokens":
        key["step_cap"] = row["step_cap"]
    return json.dumps(key, sort_keys=True)


def metric_values(rows: list[dict], metric: str) -> list[float]:
    return [r[metric] for r in rows if r[metric] is not None]


def describe(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"n": len(values), "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else None}


def build_groups(rows: list[dict]) -> list[dict]:
    groups: dict[str, dict] = {}
    for row in rows:
        g = groups.setdefault(group_key(row), {"label": row["run"], "scale": row["scale"],
                                               "cdm_weight": row["cdm_weight"], "control": row["control"],
                                               "match": row["match"], "model": row["model"],
                                               "noise": row["noise"], "params": row["params"], "rows": []})
        g["rows"].append(row)
    out = []
    for g in groups.values():
        g["seeds"] = [r["seed"] for r in g["rows"]]
        g["n"] = len(g["rows"])
        g["stats"] = {m: describe(metric_values(g["rows"], m))
                      for m in dict.fromkeys([m for m, _ in METRICS + EXTRA_METRICS] + list(VALID_DECODERS))}
        out.append(g)
    return out


def reference_metric(control: dict) -> str:
    """The control's Pure-AR BPB: eval_cf's ar decoder, or the trainer's val_bpb without an eval."""
    return "ar" if control["stats"]["ar"] is not None else "val_bpb"


def window_set(row: dict, metric: str) -> dict | None:
    """The per-window data a metric of a row lives on: the held-out windows for ar_heldout, else the eval's."""
    return row["_heldout_windows"] if metric == "ar_heldout" else row["_windows"]


def same_windows(a: dict | None, b: dict | None) -> bool:
    """Two cells' per-window data cover the same windows: same offsets, same eval seed, and the
    same byte counts (same offsets on other validation data would show different bytes)."""
    return (a is not None and b is not None and a["seed"] == b["seed"]
            and np.array_equal(a["offsets"], b["offsets"]) and np.array_equal(a["bytes"], b["bytes"]))


def window_cell(row: dict, metric: str) -> tuple | None:
    """(nll (N,), bytes (N,)) of a cell's metric, or None without per-window data for it."""
    w = window_set(row, metric)
    key = "ar" if metric == "ar_heldout" else metric
    if w is None or key not in w["nll"]:
        return None
    return w["nll"][key], w["bytes"]


def read_floor(meta_path: Path | None) -> dict | None:
    """The entropy floor of a synthetic corpus (its meta.json's exact entropy_bits_per_byte, the
    long-run rate of the source), or None: a natural corpus has no known floor."""
    if meta_path is None:
        return None
    meta = read_json(meta_path)
    if "entropy_bits_per_byte" not in meta:
        return None
    return {"bits_per_byte": float(meta["entropy_bits_per_byte"]), "source": str(meta_path),
            "val_sample_bits_per_byte": meta.get("val_entropy_bits_per_byte_sample"),
            "below_rule": "z = (BPB - floor) / se < -2 (se: the window bootstrap's, or the ELBO's Monte Carlo se)"}


def sort_rows(rows: list[dict]) -> list[dict]:
    """By size, then control first, then weight, then wall-clock before token matching; seeds in input order."""
    return sorted(rows, key=lambda r: (r["params"] or 0, r["scale"], not r["control"], r["cdm_weight"],
                                       r["match"] == "tokens"))
