"""Summarize trained (and evaluated) runs: results.json files -> a table, seed statistics, a plot.

    python scripts/summarize.py runs/quickstart/cells/*/results.json          # print the table
    python scripts/summarize.py --out_dir OUT CELL/results.json ...           # + OUT/results.{md,json,png}

Each argument is a trainer's results.json (or the folder holding it). Next to it, read when
present: eval_cf.json (eval_cf.py's scores; final_model.eval_cf.json, eval_cf.py's own default
name, is accepted too) and cell.json (written by the orchestrators: scale label, matching).

Columns: the original table's (run, params, objective, Pure-AR BPB, CF BPB) plus cf_valid BPB,
the trainer's final val_bpb, steps and tokens seen. A run is named by the real size of its model
(layers and width from results.json, e.g. 3L-d128 under PRESET=cpu); "stands in for" is the
original ablation's scale it replaces (cell.json: 5L or 11L), which is what cells are compared by.
A control's label says how its length was matched: by wall clock (the original), by a step cap
with no clock (step-matched: BUDGET_SECS=0; older cell.json files say wallclock there and are
read as steps), or by the tokens of a shared run (token-matched). Per cell, the valid decoder of
lowest BPB is compared with the same-seed control's Pure-AR (the "best valid decoder" table). Pure-AR BPB, CF BPB and cf_valid BPB are
eval_cf.py's decoders ar, cf_published and cf_valid on the same windows. CF BPB is the decoder
as first published and is NOT a valid code length (METHOD.md §6); every header showing it says so.

Runs with the same configuration and different seeds form a group: mean ± sample standard
deviation (n - 1). Each group of shared runs (cdm_weight > 0) is compared with each control
group (cdm_weight 0) of the same scale, metric by metric against the control's Pure-AR BPB:

- seeds: a paired t-test over the seeds both groups have (same seed = same initialization and
  data order; t = mean(d) / (sd(d) / sqrt(k)), df = k - 1) where at least two seeds pair, else
  Welch's two-sample t-test (Welch-Satterthwaite df) where both groups have two seeds or more;
  no test otherwise, and the table says why. No test treats a sample mean as a known constant.
- seeds and windows: a hierarchical percentile bootstrap of the difference of seed-mean BPBs
  (seeds resampled, then each drawn seed's windows), when every cell has a per-window file.

From eval_cf.py's per-window file (<eval json stem>.windows.npz, named by the eval JSON's
per_window_file), each decoder BPB gets a percentile bootstrap CI over windows, and the
difference between two cells scored on the same windows (same offsets) a paired bootstrap CI
over windows. A cell without that file gets no CI: the tables say it is unavailable. Every
bootstrap draws from numpy's default_rng(--boot_seed) (reproducible) with --n_boot resamples;
the exact draw order is documented at each function. The Student t distribution is computed
here (regularized incomplete beta function by continued fraction).

The plot (results.png) needs matplotlib, a regular dependency of the project; in an environment
without it results.png is skipped with a message. Every BPB table header and axis says that lower
is better; the plot shows each seed's value beside the seed mean ± std.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import sys
from pathlib import Path

import numpy as np

from meadow_golf.data.challenge_format import atomic_write_bytes
from meadow_golf.common.cli_help import HelpFormatter
from meadow_golf.report.scale_fit import se_from_ci, weighted_line

EVAL_NAMES = ("eval_cf.json", "final_model.eval_cf.json")
CELL_JSON = "cell.json"
CF_HEADER = "CF BPB (published; NOT a valid code length)"
# (row key, column header) of the BPB metrics, in table order.
METRICS = (
    ("ar", "Pure-AR BPB"),
    ("cf_published", CF_HEADER),
    ("cf_valid", "cf_valid BPB"),
    ("val_bpb", "val_bpb (trainer)"),
)
METRIC_HEADER = dict(METRICS)
# What a shared group is compared with the control's Pure-AR mean on: the valid two-pass
# decoder, the model's own causal pass, and the published number (the original's claim).
TESTED_METRICS = ("cf_valid", "ar", "cf_published")
TABLE_COLUMNS = ("run", "stands in for", "seed", "params", "objective", *(h for _, h in METRICS), "steps",
                 "tokens seen")
# Decoders whose per-window NLL eval_cf.py stores (the val_bpb metric has no windows).
WINDOW_METRICS = ("ar", "cf_published", "cf_valid")
# The valid code lengths a cell's best decoder is chosen from (cf.py: the fill mixtures are
# valid too); cf_published is never a candidate (METHOD.md §6).
VALID_DECODERS = ("ar", "cf_valid", "cf_bidir_skeleton", "cf_valid_mix", "cf_bidir_skeleton_mix",
                  "bidir_l2r", "bidir_confidence")
# The bidirectional pass's own codes (METHOD.md §8), shown with the ELBO in their own table.
BIDIR_DECODERS = ("bidir_l2r", "bidir_confidence")
DEFAULT_N_BOOT = 2000
DEFAULT_BOOT_SEED = 0
CI_LEVEL = 0.95
LN2 = math.log(2.0)
# Replicates drawn per block: bounds the (block, N) index array for large N; the stream of
# draws is the same as one replicate at a time (see window_bootstrap).
BOOT_BLOCK = 64
NO_WINDOWS = "unavailable (no per-window file)"


class InputError(ValueError):
    """Bad input (reported as one `error:` line)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one `error:` line instead of the usage block."""

    def error(self, message):
        raise InputError(message)


# ----------------------------------------------------------------------------- Student t


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b), a, b > 0, 0 <= x <= 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc: x={x} outside [0, 1]")
    if x in (0.0, 1.0):
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2)."""
    if df <= 0:
        raise ValueError(f"t distribution needs df > 0, got {df}")
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_cdf(t: float, df: float) -> float:
    """Student t cumulative distribution function."""
    half = 0.5 * t_two_sided_p(t, df)
    return 1.0 - half if t >= 0 else half


def paired_t(a: list[float], b: list[float]) -> dict | None:
    """Paired t-test of a[i] - b[i] (t = mean(d) / (sd(d) / sqrt(k)), df = k - 1, two-sided p);
    None if k < 2 or the differences do not vary."""
    if len(a) != len(b):
        raise ValueError("paired_t needs two lists of the same length")
    d = [x - y for x, y in zip(a, b)]
    k = len(d)
    if k < 2:
        return None
    sd = statistics.stdev(d)
    if sd == 0:
        return None
    t = statistics.fmean(d) / (sd / math.sqrt(k))
    return {"t": t, "df": k - 1, "p": t_two_sided_p(t, k - 1)}


def welch_t(a: list[float], b: list[float]) -> dict | None:
    """Welch's two-sample t-test (Welch-Satterthwaite df); None unless both have n >= 2 and s > 0."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return None
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    return {"t": t, "df": df, "p": t_two_sided_p(t, df)}


# ----------------------------------------------------------------------------- bootstraps


def _bpb(nll: np.ndarray, n_bytes: np.ndarray) -> np.ndarray:
    """BPB of windows along the last axis: sum NLL / (ln 2 * sum bytes) (METHOD.md §2)."""
    return nll.sum(axis=-1) / (LN2 * n_bytes.sum(axis=-1))


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])  # numpy's default (linear) rule
    return float(lo), float(hi)


def window_bootstrap(cells: list[tuple[np.ndarray, np.ndarray]], n_boot: int, seed: int,
                     level: float = CI_LEVEL) -> dict:
    """Percentile bootstrap CI over windows of BPB(cells[0]) (one cell), or of
    BPB(cells[0]) - BPB(cells[1]) (two cells on the SAME windows, paired: one set of window
    indices serves both, so the windows' shared difficulty cancels).

    cells: (nll (N,), bytes (N,)) per cell. Draws: rng = default_rng(seed); replicate r takes
    idx = rng.integers(0, N, size=N), one replicate after the other. BPB is a ratio of sums,
    so a replicate recomputes both sums on the drawn windows (not a mean of per-window BPBs).
    """
    if len(cells) not in (1, 2):
        raise ValueError("window_bootstrap takes one cell, or two cells on the same windows")
    n = cells[0][0].size
    if any(nll.shape != (n,) or b.shape != (n,) for nll, b in cells):
        raise ValueError("the cells of a paired bootstrap must have the same windows")
    rng = np.random.default_rng(seed)

    def stat(index):
        values = [_bpb(nll[index], b[index]) for nll, b in cells]
        return values[0] if len(values) == 1 else values[0] - values[1]

    replicates = []
    for start in range(0, n_boot, BOOT_BLOCK):
        index = rng.integers(0, n, size=(min(BOOT_BLOCK, n_boot - start), n))
        replicates.append(stat(index))
    lo, hi = _percentiles(np.concatenate(replicates), level)
    full = np.arange(n)
    return {"estimate": float(stat(full)), "lo": lo, "hi": hi, "level": level, "n_boot": n_boot, "seed": seed,
            "windows": n}


def hierarchical_bootstrap(group: list[tuple], control: list[tuple], n_boot: int, seed: int,
                           level: float = CI_LEVEL, same_windows: list[bool] | None = None) -> dict:
    """Percentile bootstrap CI of mean_seeds BPB(group) - mean_seeds BPB(control), resampling
    seeds and then, within each drawn seed, windows.

    group, control: per seed, (nll (N,), bytes (N,)). same_windows=None: unpaired. Otherwise the
    pairing by seed: the two lists are the same seeds in the same order, and same_windows[j]
    says whether the two cells of seed j were scored on the same windows.
    Draws: rng = default_rng(seed); per replicate,
      paired:   s = rng.integers(0, k, size=k); for each j in s: w = rng.integers(0, N_j, size=N_j)
                for the group cell, then, unless the two cells of seed j have the same windows
                (same N and offsets; see same_windows), a second draw for the control cell;
      unpaired: the group's seeds and windows as above (one window draw per drawn seed), then
                the control's, independently.
    The estimate is the same difference on all seeds and windows.
    """
    paired = same_windows is not None
    if paired and not len(group) == len(control) == len(same_windows):
        raise ValueError("a paired hierarchical bootstrap needs one group and one control cell per seed")
    rng = np.random.default_rng(seed)

    def cell_bpb(cell, index=None):
        nll, n_bytes = cell[0], cell[1]
        return float(_bpb(nll, n_bytes)) if index is None else float(_bpb(nll[index], n_bytes[index]))

    def draw_cell(cell):
        return cell_bpb(cell, rng.integers(0, cell[0].size, size=cell[0].size))

    def draw_group(cells):
        chosen = rng.integers(0, len(cells), size=len(cells))
        return statistics.fmean(draw_cell(cells[j]) for j in chosen)

    replicates = np.empty(n_boot)
    for r in range(n_boot):
        if paired:
            diffs = []
            for j in rng.integers(0, len(group), size=len(group)):
                g, c = group[j], control[j]
                w = rng.integers(0, g[0].size, size=g[0].size)
                cw = w if same_windows[j] else rng.integers(0, c[0].size, size=c[0].size)
                diffs.append(cell_bpb(g, w) - cell_bpb(c, cw))
            replicates[r] = statistics.fmean(diffs)
        else:
            replicates[r] = draw_group(group) - draw_group(control)
    lo, hi = _percentiles(replicates, level)
    estimate = statistics.fmean(cell_bpb(g) for g in group) - statistics.fmean(cell_bpb(c) for c in control)
    return {"estimate": estimate, "lo": lo, "hi": hi, "level": level, "n_boot": n_boot, "seed": seed,
            "paired_by_seed": paired}


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
        "eval": None, "elbo": None,
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
                           "seq_len": proto.get("seq_len"),
                           "consistency_passed": ev.get("consistency", {}).get("passed"),
                           "per_window_file": None}
            if ev.get("per_window_file") is not None:
                row["_windows"] = load_windows(cell / name, ev, decoders)
                row["eval"]["per_window_file"] = str(cell / ev["per_window_file"])
            break
    return row


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
        g["stats"] = {m: describe(metric_values(g["rows"], m)) for m in dict.fromkeys([m for m, _ in METRICS]
                                                                                       + list(VALID_DECODERS))}
        out.append(g)
    return out


def reference_metric(control: dict) -> str:
    """The control's Pure-AR BPB: eval_cf's ar decoder, or the trainer's val_bpb without an eval."""
    return "ar" if control["stats"]["ar"] is not None else "val_bpb"


def same_windows(a: dict | None, b: dict | None) -> bool:
    """Two cells' per-window data cover the same windows: same offsets, same eval seed, and the
    same byte counts (same offsets on other validation data would show different bytes)."""
    return (a is not None and b is not None and a["seed"] == b["seed"]
            and np.array_equal(a["offsets"], b["offsets"]) and np.array_equal(a["bytes"], b["bytes"]))


def window_cell(row: dict, metric: str) -> tuple | None:
    """(nll (N,), bytes (N,)) of a cell's metric, or None without per-window data for it."""
    w = row["_windows"]
    if w is None or metric not in w["nll"]:
        return None
    return w["nll"][metric], w["bytes"]


def seed_test(group: dict, control: dict, metric: str, ref: str) -> dict:
    """The seed-level test of one comparison: paired by seed where at least two seeds pair,
    else Welch where both sides have two seeds or more; else none, with the reason."""
    mine = {r["seed"]: r[metric] for r in group["rows"] if r[metric] is not None and r["seed"] is not None}
    theirs = {r["seed"]: r[ref] for r in control["rows"] if r[ref] is not None and r["seed"] is not None}
    common = [seed for seed in mine if seed in theirs]
    if len(common) >= 2:
        result = paired_t([mine[s] for s in common], [theirs[s] for s in common])
        return {"method": f"paired t over {len(common)} common seeds", "seeds": common, "result": result,
                "reason": None if result else "the paired differences do not vary"}
    a, b = metric_values(group["rows"], metric), metric_values(control["rows"], ref)
    if len(a) >= 2 and len(b) >= 2:
        result = welch_t(a, b)
        return {"method": "Welch t", "seeds": None, "result": result,
                "reason": None if result else "neither side varies"}
    return {"method": "none", "seeds": None, "result": None,
            "reason": f"fewer than two common seeds and n = {len(a)} vs {len(b)}: no seed-level test"}


def hierarchical_for(group: dict, control: dict, metric: str, ref: str, seeds: list | None, n_boot: int,
                     boot_seed: int) -> tuple[dict | None, str | None]:
    """The hierarchical bootstrap of one comparison, or (None, why not)."""
    if ref not in WINDOW_METRICS:
        return None, "the control has no eval (val_bpb only)"
    if group["n"] < 2 and control["n"] < 2:
        return None, "one seed on each side: see the paired window CIs"
    if seeds is not None:  # paired by seed, over the common seeds
        g_rows = [next(r for r in group["rows"] if r["seed"] == s) for s in seeds]
        c_rows = [next(r for r in control["rows"] if r["seed"] == s) for s in seeds]
    else:
        g_rows = [r for r in group["rows"] if r[metric] is not None]
        c_rows = [r for r in control["rows"] if r[ref] is not None]
    g_cells, c_cells = [window_cell(r, metric) for r in g_rows], [window_cell(r, ref) for r in c_rows]
    if any(c is None for c in g_cells + c_cells):
        return None, NO_WINDOWS
    shared = [same_windows(a["_windows"], b["_windows"]) for a, b in zip(g_rows, c_rows)] if seeds else None
    return hierarchical_bootstrap(g_cells, c_cells, n_boot, boot_seed, same_windows=shared), None


def build_tests(groups: list[dict], n_boot: int = DEFAULT_N_BOOT, boot_seed: int = DEFAULT_BOOT_SEED) -> list[dict]:
    """One entry per (shared group, control group of the same scale and model, metric)."""
    tests = []
    for g in groups:
        if g["control"]:
            continue
        for c in groups:
            if not c["control"] or c["scale"] != g["scale"] or architecture(c["model"]) != architecture(g["model"]):
                continue
            ref = reference_metric(c)
            ref_values = metric_values(c["rows"], ref)
            if not ref_values:
                continue
            metrics = TESTED_METRICS if ref == "ar" else ("val_bpb",)
            for m in metrics:
                values = metric_values(g["rows"], m)
                if not values:
                    continue
                test = seed_test(g, c, m, ref)
                boot, boot_reason = hierarchical_for(g, c, m, ref, test["seeds"], n_boot, boot_seed)
                tests.append({
                    "group": g["label"], "control": c["label"], "metric": m, "n": len(values),
                    "mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
                    "control_metric": ref, "control_mean": statistics.fmean(ref_values), "control_n": len(ref_values),
                    "control_std": statistics.stdev(ref_values) if len(ref_values) > 1 else None,
                    "diff": statistics.fmean(values) - statistics.fmean(ref_values),
                    "seed_test": test, "hierarchical_bootstrap": boot, "hierarchical_reason": boot_reason,
                    "window_pairs": window_pairs(g, c, m, ref, n_boot, boot_seed),
                })
    return tests


def window_pairs(group: dict, control: dict, metric: str, ref: str, n_boot: int, boot_seed: int) -> list[dict]:
    """Per seed both groups have: the paired bootstrap CI over windows of BPB(group cell, metric)
    - BPB(control cell, ref), where the two cells were scored on the same windows."""
    out = []
    for row in group["rows"]:
        other = next((r for r in control["rows"] if r["seed"] == row["seed"] and r["seed"] is not None), None)
        if other is None or row[metric] is None or other[ref] is None:
            continue
        entry = {"seed": row["seed"], "diff": row[metric] - other[ref], "ci": None, "reason": None}
        a, b = window_cell(row, metric), window_cell(other, ref)
        if a is None or b is None:
            entry["reason"] = NO_WINDOWS
        elif not same_windows(row["_windows"], other["_windows"]):
            entry["reason"] = "not scored on the same windows: no paired CI"
        else:
            entry["ci"] = window_bootstrap([a, b], n_boot, boot_seed)
        out.append(entry)
    return out


def cell_cis(rows: list[dict], n_boot: int = DEFAULT_N_BOOT, boot_seed: int = DEFAULT_BOOT_SEED) -> list[dict]:
    """Per cell and evaluated decoder: its BPB and the bootstrap CI over windows (or why none)."""
    out = []
    for row in rows:
        for m in dict.fromkeys(WINDOW_METRICS + VALID_DECODERS):
            if row[m] is None:
                continue
            cell = window_cell(row, m)
            out.append({"run": row["run"], "seed": row["seed"], "cell": row["cell"], "metric": m, "bpb": row[m],
                        "ci": window_bootstrap([cell], n_boot, boot_seed) if cell else None,
                        "reason": None if cell else NO_WINDOWS})
    return out


def best_valid(rows: list[dict], n_boot: int = DEFAULT_N_BOOT, boot_seed: int = DEFAULT_BOOT_SEED) -> list[dict]:
    """Per evaluated cell: its valid decoder of lowest BPB (VALID_DECODERS order breaks ties) and,
    for a shared cell, the difference to each control of the same scale, model and seed (its
    Pure-AR `ar`), with the paired bootstrap CI over windows when the two were scored on the same
    windows (or why none)."""
    out = []
    for row in rows:
        if not row["valid_bpb"]:
            continue
        best = min(row["valid_bpb"], key=lambda d: (row["valid_bpb"][d], VALID_DECODERS.index(d)))
        entry = {"run": row["run"], "cell": row["cell"], "seed": row["seed"], "scale": row["scale"],
                 "size": row["size"], "control": row["control"], "best_decoder": best,
                 "best_bpb": row["valid_bpb"][best], "candidates": dict(row["valid_bpb"]), "comparisons": []}
        for other in rows:
            if (row["control"] or not other["control"] or other["scale"] != row["scale"]
                    or architecture(other["model"]) != architecture(row["model"])
                    or other["seed"] != row["seed"] or row["seed"] is None
                    or other["ar"] is None):
                continue
            comparison = {"control": other["run"], "control_cell": other["cell"], "control_ar_bpb": other["ar"],
                          "diff": entry["best_bpb"] - other["ar"], "ci": None, "reason": None}
            a, b = window_cell(row, best), window_cell(other, "ar")
            if a is None or b is None:
                comparison["reason"] = NO_WINDOWS
            elif not same_windows(row["_windows"], other["_windows"]):
                comparison["reason"] = "not scored on the same windows: no paired CI"
            else:
                comparison["ci"] = window_bootstrap([a, b], n_boot, boot_seed)
            entry["comparisons"].append(comparison)
        out.append(entry)
    return out


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


def bidir_entries(rows: list[dict], cis: list[dict], floor: dict | None) -> list[dict]:
    """Per cell whose eval scored the bidirectional pass (bidir_* decoders or the ELBO): every valid
    code next to the ELBO bound, and with a floor each one's z against it."""
    out = []
    for row in rows:
        if row["elbo"] is None and not any(row[d] is not None for d in BIDIR_DECODERS):
            continue
        codes = {}
        for d in ("ar", "cf_valid", *BIDIR_DECODERS):
            if row[d] is None:
                continue
            ci = next((c["ci"] for c in cis if c["cell"] == row["cell"] and c["metric"] == d), None)
            se = se_from_ci(ci["lo"], ci["hi"]) if ci and ci["hi"] > ci["lo"] else None
            codes[d] = {"bpb": row[d], "se": se}
        if row["elbo"] is not None:
            codes["elbo"] = {"bpb": row["elbo"]["bpb"], "se": row["elbo"]["se"], "bound": True}
        if floor is not None:
            for c in codes.values():
                c["minus_floor"] = c["bpb"] - floor["bits_per_byte"]
                c["z"] = c["minus_floor"] / c["se"] if c["se"] else None
                c["below_floor"] = bool(c["z"] is not None and c["z"] < -2.0)
        out.append({"run": row["run"], "cell": row["cell"], "seed": row["seed"], "noise": row["noise"],
                    "cdm_weight": row["cdm_weight"], "codes": codes})
    return out


def scale_points(groups: list[dict], n_boot: int, boot_seed: int) -> list[dict]:
    """Per shared group and its control of the same scale (same architecture up to the mask row):
    the Pure-AR tax (shared ar - control ar) and the best valid decoder's gap (the group's decoder
    of lowest seed-mean BPB - control ar), each with its seed test and hierarchical CI."""
    out = []
    for g in groups:
        if g["control"]:
            continue
        for c in groups:
            if (not c["control"] or c["scale"] != g["scale"] or architecture(c["model"]) != architecture(g["model"])
                    or c["stats"]["ar"] is None or g["stats"]["ar"] is None):
                continue
            best = min((m for m in VALID_DECODERS if g["stats"][m] is not None),
                       key=lambda m: (g["stats"][m]["mean"], VALID_DECODERS.index(m)))
            point = {"group": g["label"], "control": c["label"], "scale": g["scale"], "params": c["params"],
                     "cdm_weight": g["cdm_weight"], "noise": g["noise"], "n": g["n"], "control_n": c["n"],
                     "best_decoder": best}
            for key, metric in (("tax", "ar"), ("best_gap", best)):
                test = seed_test(g, c, metric, "ar")
                boot, reason = hierarchical_for(g, c, metric, "ar", test["seeds"], n_boot, boot_seed)
                point[key] = {"metric": metric, "diff": g["stats"][metric]["mean"] - c["stats"]["ar"]["mean"],
                              "seed_test": test, "ci": boot, "ci_reason": reason}
            out.append(point)
    return out


def scale_fits(points: list[dict]) -> dict:
    """For each quantity (tax, best_gap), per shared weight and noise: the weighted line in
    log10(control params) through the points that have a CI (scale_fit.py), or why none."""
    fits = {}
    keys = dict.fromkeys((p["cdm_weight"], p["noise"]) for p in points)
    for weight, noise in keys:
        mine = sorted((p for p in points if p["cdm_weight"] == weight and p["noise"] == noise),
                      key=lambda p: p["params"] or 0)
        for quantity in ("tax", "best_gap"):
            usable = [p for p in mine if p[quantity]["ci"] is not None and p["params"]
                      and p[quantity]["ci"]["hi"] > p[quantity]["ci"]["lo"]]
            name = f"{quantity} w={weight_text(weight)}{noise_text(noise, None)}"
            if len({p["params"] for p in usable}) < 3:
                fits[name] = {"quantity": quantity, "cdm_weight": weight, "noise": noise, "fit": None,
                              "reason": f"{len(usable)} sizes with a CI (a line with an error needs 3)"}
                continue
            x = [math.log10(p["params"]) for p in usable]
            y = [p[quantity]["diff"] for p in usable]
            se = [se_from_ci(p[quantity]["ci"]["lo"], p[quantity]["ci"]["hi"]) for p in usable]
            fits[name] = {"quantity": quantity, "cdm_weight": weight, "noise": noise, "reason": None,
                          "x": "log10(params of the control)", "points": [p["group"] for p in usable],
                          "fit": weighted_line(x, y, se, t_cdf)}
    return fits


# ----------------------------------------------------------------------------- text


def num(value, fmt: str = ".4f") -> str:
    return "—" if value is None else format(value, fmt)


def p_text(p) -> str:
    if p is None:
        return "—"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.2e}"


def mean_std_text(stats: dict | None) -> str:
    if stats is None:
        return "—"
    if stats["std"] is None:
        return f"{stats['mean']:.4f}"
    return f"{stats['mean']:.4f} ± {stats['std']:.4f}"


LOWER = "lower is better"


def lower_is_better(header: str) -> str:
    """A BPB column's header with the direction a reader needs (bits per byte: fewer is better)."""
    # A header that already ends in a note (the CF label must read exactly so) keeps it whole.
    return f"{header}, {LOWER}" if header.endswith(")") else f"{header} ({LOWER})"


def md_table(header: tuple | list, body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in body]


def sort_rows(rows: list[dict]) -> list[dict]:
    """By size, then control first, then weight, then wall-clock before token matching; seeds in input order."""
    return sorted(rows, key=lambda r: (r["params"] or 0, r["scale"], not r["control"], r["cdm_weight"],
                                       r["match"] == "tokens"))


def runs_table(rows: list[dict]) -> list[str]:
    body = [[r["run"], r["stands_in_for"], str(r["seed"]), params_text(r["params"]), r["objective"],
             *(num(r[m]) for m, _ in METRICS), str(r["steps"]), f"{r['tokens_seen']:,}"] for r in rows]
    bpb_headers = {h for _, h in METRICS}
    return md_table([lower_is_better(h) if h in bpb_headers else h for h in TABLE_COLUMNS], body)


def groups_table(groups: list[dict]) -> list[str]:
    header = ("group", "stands in for", "n", "seeds", *(lower_is_better(h) for _, h in METRICS), "steps (mean)")
    body = []
    for g in groups:
        steps = statistics.fmean(r["steps"] for r in g["rows"])
        body.append([g["label"], g["scale"], str(g["n"]), ", ".join(str(s) for s in g["seeds"]),
                     *(mean_std_text(g["stats"][m]) for m, _ in METRICS), f"{steps:.0f}"])
    return md_table(header, body)


def ci_text(ci: dict | None, reason: str | None = None, signed: bool = False) -> str:
    if ci is None:
        return reason or "—"
    fmt = "+.4f" if signed else ".4f"
    return f"[{format(ci['lo'], fmt)}, {format(ci['hi'], fmt)}]"


def metric_label(metric: str) -> str:
    """The column header of a metric: cf_published's says it is not a valid code length."""
    return METRIC_HEADER.get(metric, metric)


def cis_table(cis: list[dict]) -> list[str]:
    header = ("run", "seed", "decoder", lower_is_better("BPB"), f"{CI_LEVEL:.0%} CI over windows")
    body = [[c["run"], str(c["seed"]), metric_label(c["metric"]), f"{c['bpb']:.4f}", ci_text(c["ci"], c["reason"])]
            for c in cis]
    return md_table(header, body)


def df_text(result: dict | None) -> str:
    """A paired test's df is an integer (k - 1); Welch's is fractional."""
    if result is None:
        return "—"
    return str(result["df"]) if isinstance(result["df"], int) else f"{result['df']:.1f}"


def tests_table(tests: list[dict]) -> list[str]:
    header = ("group", "metric", "n", lower_is_better("BPB mean ± std"), "control Pure-AR mean ± std (n)",
              "diff (< 0: lower BPB than the control, better)", "seed test", "t", "df",
              "p (two-sided)", f"{CI_LEVEL:.0%} CI of diff, seeds × windows")
    body = []
    for t in tests:
        test = t["seed_test"]
        r = test["result"]
        control_std = f" ± {t['control_std']:.4f}" if t["control_std"] is not None else ""
        mean_std = f"{t['mean']:.4f}" + (f" ± {t['std']:.4f}" if t["std"] is not None else "")
        method = test["method"] if r else f"{test['method']}: {test['reason']}" if test["method"] != "none" \
            else test["reason"]
        body.append([t["group"], metric_label(t["metric"]), str(t["n"]), mean_std,
                     f"{t['control_mean']:.4f}{control_std} ({t['control_n']}, {t['control']})", f"{t['diff']:+.4f}",
                     method, num(r and r["t"], ".3f"), df_text(r),
                     p_text(r and r["p"]), ci_text(t["hierarchical_bootstrap"], t["hierarchical_reason"], True)])
    return md_table(header, body)


def pairs_table(tests: list[dict]) -> list[str]:
    header = ("group", "seed", "metric", "control", "diff (same seed; < 0: lower BPB than the control, better)",
              f"{CI_LEVEL:.0%} paired CI over windows")
    body = [[t["group"], str(p["seed"]), metric_label(t["metric"]), f"{t['control']} Pure-AR", f"{p['diff']:+.4f}",
             ci_text(p["ci"], p["reason"], True)] for t in tests for p in t["window_pairs"]]
    return md_table(header, body)


def footnote_cis(n_boot: int, boot_seed: int) -> str:
    return (f"Method: percentile bootstrap over the evaluation windows ({n_boot} resamples, numpy "
            f"default_rng({boot_seed})); each resample draws N windows with replacement and recomputes "
            "BPB = Σ NLL / (ln 2 · Σ bytes) on them. It counts the sampling of windows only, not the "
            f"seed-to-seed spread of training. {NO_WINDOWS}: the eval JSON names no per-window file, so no "
            "CI is given.")


def footnote_tests(n_boot: int, boot_seed: int) -> str:
    return ("Method: diff = group mean − control mean Pure-AR BPB (lower is better). Seed test: a paired t-test "
            "of the per-seed differences over the seeds both groups have (same seed = same initialization and "
            "data order; df = k − 1) when at least two seeds pair, else Welch's two-sample t-test "
            "(Welch–Satterthwaite df) when both sides have two seeds or more, else none; two-sided p. Neither "
            "treats a sample mean as a known constant. CI: hierarchical percentile bootstrap of the difference of "
            f"seed means ({n_boot} resamples, numpy default_rng({boot_seed})): seeds resampled with replacement "
            "(jointly for the two groups when paired by seed), then each drawn seed's windows (one draw for both "
            "cells of a seed when they share windows).")


def best_valid_table(best: list[dict]) -> list[str]:
    header = ("run", "stands in for", "seed", "best valid decoder", lower_is_better("BPB"), "valid decoders (BPB)",
              "control (same seed)", "control Pure-AR BPB", "diff (< 0: better than the control)",
              f"{CI_LEVEL:.0%} paired CI over windows")
    body = []
    for b in best:
        candidates = ", ".join(f"{d} {v:.4f}" for d, v in b["candidates"].items())
        first = [b["run"], b["scale"], str(b["seed"]), b["best_decoder"], f"{b['best_bpb']:.4f}", candidates]
        if not b["comparisons"]:
            why = "— (a control)" if b["control"] else "— (no evaluated control of this seed and scale)"
            body.append(first + [why, "—", "—", "—"])
        for c in b["comparisons"]:
            body.append(first + [c["control"], f"{c['control_ar_bpb']:.4f}", f"{c['diff']:+.4f}",
                                 ci_text(c["ci"], c["reason"], True)])
    return md_table(header, body)


def footnote_best_valid(n_boot: int, boot_seed: int) -> str:
    return ("Method: per cell, the valid decoder of lowest BPB among those its eval ran (" + ", ".join(VALID_DECODERS)
            + "; all valid code lengths on the same windows; cf_published is never a candidate). diff = its BPB − "
            "the BPB of the Pure-AR decoder (ar) of the control of the same scale and seed (lower is better), with a "
            f"paired percentile bootstrap over windows ({n_boot} resamples, numpy default_rng({boot_seed})) when the "
            "two cells were scored on the same windows. The decoder is chosen on the same windows the CI resamples, "
            "so the CI does not count that choice among the candidates (it is slightly optimistic for the best).")


def bidir_table(entries: list[dict], floor: dict | None) -> list[str]:
    names = ("ar", "cf_valid", *BIDIR_DECODERS, "elbo")
    header = ["run", "seed", *(lower_is_better(n + (" (upper bound ± se)" if n == "elbo" else " BPB")) for n in names)]
    body = []
    for e in entries:
        cells = []
        for n in names:
            c = e["codes"].get(n)
            if c is None:
                cells.append("—")
                continue
            text = f"{c['bpb']:.4f}" + (f" ± {c['se']:.4f}" if n == "elbo" else "")
            if floor is not None and c.get("z") is not None:
                text += f" (z {c['z']:+.1f}{', BELOW the floor' if c['below_floor'] else ''})"
            cells.append(text)
        body.append([e["run"], str(e["seed"]), *cells])
    return md_table(header, body)


def footnote_bidir(floor: dict | None) -> str:
    text = ("Every column is a valid code length on the same windows: ar and cf_valid as above; bidir_l2r and "
            "bidir_confidence are chain-rule codes of the bidirectional pass (each token scored with every "
            "not-yet-decoded position hidden; left to right, or the most confident hidden position next, chosen "
            "from decoded tokens only; METHOD.md §8). elbo: the absorbing diffusion ELBO, an upper bound on the "
            "model's NLL and so a valid code length in expectation, ± its Monte Carlo standard error over windows; "
            "only a model with a mask token has one.")
    if floor is not None:
        text += (f" Floor: the source's exact entropy rate, {floor['bits_per_byte']:.4f} bits per byte; "
                 "z = (BPB − floor) / se with the window bootstrap's se (the ELBO: its own se); z < −2 would flag "
                 "a code below the floor, which no valid code can be on average.")
    return text


def scale_table(points: list[dict]) -> list[str]:
    header = ("shared group", "control", "params (control)", "seeds (shared / control)",
              "Pure-AR tax: shared ar − control ar (> 0: joint training costs)", "seed test (t, df, p)",
              f"{CI_LEVEL:.0%} CI, seeds × windows", "best valid decoder of the group",
              "its gap to the control ar (< 0: better than the control)", f"{CI_LEVEL:.0%} CI, seeds × windows")
    body = []
    for p in sorted(points, key=lambda p: (p["params"] or 0, p["cdm_weight"])):
        tax, gap = p["tax"], p["best_gap"]
        r = tax["seed_test"]["result"]
        test = f"t {r['t']:.2f}, df {df_text(r)}, p {p_text(r['p'])}" if r else tax["seed_test"]["reason"]
        body.append([p["group"], p["control"], params_text(p["params"]), f"{p['n']} / {p['control_n']}",
                     f"{tax['diff']:+.4f}", test, ci_text(tax["ci"], tax["ci_reason"], True),
                     p["best_decoder"], f"{gap['diff']:+.4f}", ci_text(gap["ci"], gap["ci_reason"], True)])
    return md_table(header, body)


def fits_lines(fits: dict) -> list[str]:
    lines = []
    for name, f in fits.items():
        if f["fit"] is None:
            lines.append(f"- {name}: no fit ({f['reason']}).")
            continue
        fit = f["fit"]
        lines.append(f"- {name}: {fit['intercept']:+.4f} {fit['slope']:+.4f} × log10(params); slope per decade of "
                     f"params {fit['slope']:+.4f} ± {fit['slope_se']:.4f} ({fit['level']:.0%} CI "
                     f"[{fit['slope_ci']['lo']:+.4f}, {fit['slope_ci']['hi']:+.4f}], t with df {fit['df']}; "
                     f"{fit['n_points']} sizes; Birge ratio {fit['birge_ratio']:.2f}).")
    return lines


def footnote_scale(n_boot: int, boot_seed: int) -> str:
    return ("Method: per size, the shared group against the control group of the same size (same seeds where both "
            "have them). Pure-AR tax = mean ar BPB of the shared seeds − mean ar BPB of the control seeds; best "
            "valid decoder = the shared group's valid decoder of lowest seed-mean BPB (chosen on the windows the CI "
            "resamples, so that CI is slightly optimistic); seed test and CI as in the comparisons above "
            f"(hierarchical percentile bootstrap, {n_boot} resamples, numpy default_rng({boot_seed})). Fit: weighted "
            "least squares in log10(params) with weights 1/se², se = CI width / 3.92, the slope's se scaled by the "
            "Birge ratio when the points scatter more than their errors, and a Student t CI with k − 2 df "
            "(scripts/meadow_golf/report/scale_fit.py).")


def footnote_pairs(n_boot: int, boot_seed: int) -> str:
    return ("Method: for each seed both groups have, the group cell's BPB minus the control cell's Pure-AR BPB, "
            f"with a paired percentile bootstrap over windows ({n_boot} resamples, numpy default_rng({boot_seed})): "
            "one set of resampled windows serves both cells, so it applies only to cells scored on the same windows "
            "(same offsets). It counts window sampling for these two trained models, not seed-to-seed spread.")


def markdown(title: str, rows: list[dict], groups: list[dict], tests: list[dict], cis: list[dict],
             n_boot: int = DEFAULT_N_BOOT, boot_seed: int = DEFAULT_BOOT_SEED, best: list[dict] | None = None,
             bidir: list[dict] | None = None, floor: dict | None = None, points: list[dict] | None = None,
             fits: dict | None = None) -> str:
    lines = [f"# {title}", ""]
    lines += runs_table(rows)
    lines += ["",
              "Pure-AR BPB, CF BPB and cf_valid BPB: eval_cf.py's decoders ar, cf_published and cf_valid, all "
              "on the same windows. CF BPB is the coarse-to-fine decoder as first published: its pass 1 "
              "conditions on tokens decoded later, so it is NOT a valid code length (METHOD.md §6). "
              "val_bpb (trainer): the trainer's last validation (Pure-AR). — : not evaluated."]
    matched = [r for r in rows if r["matched_to"]]
    if matched:
        lines += ["", "Token-matched controls (MATCH=tokens) trained for exactly the tokens of their shared run: "
                  + "; ".join(f"{r['run']} seed {r['seed']} ← {r['matched_to']} ({r['tokens_seen']:,} tokens)"
                              for r in matched) + "."]
    if cis:
        lines += ["", "## Bootstrap CIs over windows", ""]
        lines += cis_table(cis)
        lines += ["", footnote_cis(n_boot, boot_seed)]
    seed_groups = [g for g in groups if g["n"] > 1]
    if seed_groups:
        lines += ["", "## Seed groups (mean ± sample std over seeds)", ""]
        lines += groups_table(seed_groups)
    seed_tests = [t for t in tests if t["n"] > 1 or t["control_n"] > 1]
    if seed_tests:
        lines += ["", "## Comparisons with the control over seeds", ""]
        lines += tests_table(seed_tests)
        lines += ["", footnote_tests(n_boot, boot_seed)]
    if any(t["window_pairs"] for t in tests):
        lines += ["", "## Same-seed differences, paired over windows", ""]
        lines += pairs_table(tests)
        lines += ["", footnote_pairs(n_boot, boot_seed)]
    if best:
        lines += ["", "## Best valid decoder per cell", ""]
        lines += best_valid_table(best)
        lines += ["", footnote_best_valid(n_boot, boot_seed)]
    if bidir:
        lines += ["", "## The bidirectional pass: chain-rule codes and the ELBO", ""]
        lines += bidir_table(bidir, floor)
        lines += ["", footnote_bidir(floor)]
    if points and len({p["scale"] for p in points}) > 1:
        lines += ["", "## Against model size", ""]
        lines += scale_table(points)
        lines += [""] + fits_lines(fits or {})
        lines += ["", footnote_scale(n_boot, boot_seed)]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- plot


def plot(path: Path, title: str, groups: list[dict]) -> str:
    """BPB against cdm_weight per scale (w=0: the control), one line per decoder through the seed
    means with ± std bars, and every seed's own value as a point (with 2-3 seeds a std bar alone
    hides how few there are); each control's Pure-AR BPB as a horizontal reference line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"{path.name}: skipped (matplotlib is not installed; pip install -e .)"
    scales = list(dict.fromkeys(g["scale"] for g in groups))
    fig, axes = plt.subplots(1, len(scales), figsize=(5.5 * len(scales), 4.2), squeeze=False)
    styles = {"ar": ("Pure-AR", "-", "o"), "cf_published": ("CF published (NOT a valid code length)", "--", "s"),
              "cf_valid": ("cf_valid", "-", "^")}
    for ax, scale in zip(axes[0], scales):
        mine = [g for g in groups if g["scale"] == scale]
        # The line runs from the wall-clock control (w=0) through the shared runs; a token-matched
        # control is its own reference line below.
        # One line per noise (the control, w=0, starts each): uniform and absorbing cells at the
        # same weight are different models.
        noises = list(dict.fromkeys(g["noise"] for g in mine if not g["control"])) or [None]
        for noise in noises:
            on_line = sorted((g for g in mine if g["match"] != "tokens" and (g["control"] or g["noise"] == noise)),
                             key=lambda g: g["cdm_weight"])
            tag = f", {noise} noise" if len(noises) > 1 else ""
            for metric, (label, ls, marker) in styles.items():
                pts = [(g["cdm_weight"], g["stats"][metric]) for g in on_line if g["stats"][metric] is not None]
                if not pts:
                    continue
                bars = ax.errorbar([w for w, _ in pts], [s["mean"] for _, s in pts],
                                   yerr=[s["std"] or 0.0 for _, s in pts], linestyle=ls, marker=marker, capsize=4,
                                   label=f"{label}{tag} (seed mean ± std)")
                seeds = [(g["cdm_weight"], v) for g in on_line for v in metric_values(g["rows"], metric)]
                if any(g["n"] > 1 for g in on_line):
                    ax.scatter([w for w, _ in seeds], [v for _, v in seeds], s=12, alpha=0.5,
                               color=bars[0].get_color(), marker=marker, zorder=3, label=f"{label}{tag}: each seed")
        for c in (g for g in mine if g["control"]):
            ref = c["stats"][reference_metric(c)]
            if ref is not None:
                tag = ", token-matched" if c["match"] == "tokens" else ""
                ax.axhline(ref["mean"], color="gray", linestyle=":" if tag else "-.", linewidth=1.2,
                           label=f"control w=0{tag}: Pure-AR {ref['mean']:.4f}")
        sizes = ", ".join(dict.fromkeys(r["size"] for g in mine for r in g["rows"]))
        # A size-named scale (3L96) is that size on every preset: nothing stands in for it.
        ax.set_title(sizes if sizes.replace("-d", "") == scale else f"{sizes} (stands in for {scale})")
        ax.set_xlabel("cdm_weight")
        ax.set_ylabel(f"bits per byte ({LOWER})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return f"{path.name}: written"


def plot_scale(path: Path, title: str, points: list[dict], fits: dict) -> str:
    """The Pure-AR tax and the best valid decoder's gap against the control's params (log x), each
    point with its CI, one series per shared weight and noise, with the fitted line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"{path.name}: skipped (matplotlib is not installed; pip install -e .)"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    series = dict.fromkeys((p["cdm_weight"], p["noise"]) for p in points)
    for ax, quantity, ylabel in ((axes[0], "tax", "Pure-AR tax: shared ar − control ar (BPB)"),
                                 (axes[1], "best_gap", "best valid decoder − control ar (BPB)")):
        for weight, noise in series:
            mine = sorted((p for p in points if p["cdm_weight"] == weight and p["noise"] == noise),
                          key=lambda p: p["params"] or 0)
            xs = [p["params"] for p in mine]
            ys = [p[quantity]["diff"] for p in mine]
            # max(0, ...): a percentile CI need not contain the point estimate.
            lo = [max(0.0, p[quantity]["diff"] - p[quantity]["ci"]["lo"]) if p[quantity]["ci"] else 0.0 for p in mine]
            hi = [max(0.0, p[quantity]["ci"]["hi"] - p[quantity]["diff"]) if p[quantity]["ci"] else 0.0 for p in mine]
            name = f"w={weight_text(weight)}{noise_text(noise, None)}"
            bars = ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", linestyle="none", capsize=4,
                               label=f"{name} ({CI_LEVEL:.0%} CI, seeds × windows)")
            fit = fits.get(f"{quantity} {name}", {}).get("fit")
            if fit and xs:
                grid = np.logspace(math.log10(min(xs)), math.log10(max(xs)), 50)
                ax.plot(grid, fit["intercept"] + fit["slope"] * np.log10(grid), color=bars[0].get_color(),
                        linewidth=1, label=f"fit: {fit['slope']:+.3f} per decade "
                                           f"[{fit['slope_ci']['lo']:+.3f}, {fit['slope_ci']['hi']:+.3f}]")
        ax.axhline(0.0, color="gray", linewidth=1, linestyle="-.")
        ax.set_xscale("log")
        ax.set_xlabel("parameters of the control model")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title + " (below 0: better than the control)", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return f"{path.name}: written"


# ----------------------------------------------------------------------------- main


def public_row(row: dict) -> dict:
    """A row without its per-window arrays (they stay in the per-window files)."""
    return {k: v for k, v in row.items() if k != "_windows"}


def summary_json(title: str, rows: list[dict], groups: list[dict], tests: list[dict], cis: list[dict],
                 n_boot: int = DEFAULT_N_BOOT, boot_seed: int = DEFAULT_BOOT_SEED,
                 best: list[dict] | None = None, bidir: list[dict] | None = None, floor: dict | None = None,
                 points: list[dict] | None = None, fits: dict | None = None) -> dict:
    return {
        "title": title,
        "notes": {"cf_published": "NOT a valid code length (METHOD.md §6)",
                  "window_cis": footnote_cis(n_boot, boot_seed),
                  "tests": footnote_tests(n_boot, boot_seed),
                  "window_pairs": footnote_pairs(n_boot, boot_seed),
                  "best_valid": footnote_best_valid(n_boot, boot_seed)},
        "bootstrap": {"n_boot": n_boot, "seed": boot_seed, "level": CI_LEVEL, "rng": "numpy default_rng(seed)"},
        "rows": [public_row(r) for r in rows],
        "groups": [{k: v for k, v in g.items() if k != "rows"} | {"cells": [r["cell"] for r in g["rows"]]}
                   for g in groups],
        "window_cis": cis,
        "tests": tests,
        "best_valid": best or [],
        "bidirectional": bidir or [],
        "floor": floor,
        "scale_points": points or [],
        "scale_fits": fits or {},
    }


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("results", nargs="+", type=Path, help="results.json files (or the folders holding them)")
    p.add_argument("--out_dir", type=Path, default=None, help="write results.md, results.json, results.png here")
    p.add_argument("--json_out", type=Path, default=None, help="also write the summary JSON here")
    p.add_argument("--title", default="Results", help="heading of results.md and of the plot")
    p.add_argument("--n_boot", type=int, default=DEFAULT_N_BOOT, help="bootstrap resamples (every CI)")
    p.add_argument("--boot_seed", type=int, default=DEFAULT_BOOT_SEED, help="seed of every bootstrap's numpy RNG")
    p.add_argument("--floor_meta", type=Path, default=None,
                   help="a prepared data folder's meta.json: with the exact entropy_bits_per_byte of a synthetic "
                        "source, every valid code and the ELBO is set against that floor (a natural corpus has none)")
    return p


def main(argv=None) -> int:
    p = build_parser()
    try:
        args = p.parse_args(argv)
        if args.n_boot < 100:
            raise InputError(f"--n_boot must be >= 100 (a percentile CI needs resamples), got {args.n_boot}")
        if args.boot_seed < 0:
            raise InputError(f"--boot_seed must be >= 0, got {args.boot_seed}")
        rows = sort_rows([load_row(path) for path in args.results])
        cells = [str(Path(r["results"]).resolve()) for r in rows]
        if len(set(cells)) != len(cells):
            raise InputError("the same results.json is given twice")
        groups = build_groups(rows)
        tests = build_tests(groups, args.n_boot, args.boot_seed)
        cis = cell_cis(rows, args.n_boot, args.boot_seed)
        best = best_valid(rows, args.n_boot, args.boot_seed)
        floor = read_floor(args.floor_meta)
        bidir = bidir_entries(rows, cis, floor)
        points = scale_points(groups, args.n_boot, args.boot_seed)
        fits = scale_fits(points) if len({p["scale"] for p in points}) > 1 else {}
    except (InputError, ArithmeticError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    text = markdown(args.title, rows, groups, tests, cis, args.n_boot, args.boot_seed, best, bidir, floor,
                    points, fits)
    print(text, end="")
    summary = (json.dumps(summary_json(args.title, rows, groups, tests, cis, args.n_boot, args.boot_seed, best,
                                       bidir, floor, points, fits), indent=2) + "\n").encode("utf-8")
    # Each file is replaced atomically: a failed write (disk full) leaves its previous version.
    try:
        if args.json_out:
            atomic_write_bytes(args.json_out, summary)
        if args.out_dir:
            atomic_write_bytes(args.out_dir / "results.md", text.encode("utf-8"))
            atomic_write_bytes(args.out_dir / "results.json", summary)
            print(plot(args.out_dir / "results.png", args.title, groups))
            if fits:
                print(plot_scale(args.out_dir / "results_scale.png", args.title, points, fits))
            print(f"written: {args.out_dir / 'results.md'} {args.out_dir / 'results.json'}")
    except OSError as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"error: {where}cannot write ({e.strerror or e})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
