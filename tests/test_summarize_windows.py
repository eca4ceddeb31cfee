"""scripts/summarize.py with eval_cf.py's per-window files: bootstrap CIs over windows, paired CIs
between cells on the same windows, and the interval over seeds widened by the windows all seeds
share. Each is checked against an independent computation: a loop written here from the
documented draw order (bit-exact), scipy's t, and scipy.stats.bootstrap (a different resampler:
agreement within Monte Carlo error). The per-window fixture data are generated here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
# scipy is a test dependency (the dev extra): an independent implementation of the statistics.
from scipy import stats

from meadow_golf.report import rows as report_rows
from meadow_golf.report import stats as seed_stats
from meadow_golf.report import summarize
from test_summarize import make_cell

LN2 = math.log(2)


def fake_windows(rng, n, level, noise=0.3):
    """(nll, bytes) of n windows: bytes 2000..4000, NLL about `level` bits per byte plus noise."""
    n_bytes = rng.integers(2000, 4000, size=n)
    nll = n_bytes * LN2 * (level + noise * rng.standard_normal(n))
    return nll, n_bytes


def windows_cell(root, name, *, weight, seed, arrays, offsets, eval_seed=42, write_file=True):
    """A cell whose eval JSON totals come from the per-window arrays (decoder -> (nll, bytes))."""
    path = make_cell(root, name, scale="11L", weight=weight, seed=seed, params=1000, steps=10, ar=1.0,
                     cf_published=1.0, cf_valid=1.0)
    eval_path = path.parent / "eval_cf.json"
    ev = json.loads(eval_path.read_text())
    n_bytes = next(iter(arrays.values()))[1]
    npz = {"offsets": np.asarray(offsets), "seed": np.int64(eval_seed), "bytes": n_bytes}
    ev["decoders"] = {}  # as eval_cf.py writes it: the decoders it ran, each with its arrays
    for key, (nll, _) in arrays.items():
        ev["decoders"][key] = {"bpb": math.fsum(nll) / (LN2 * int(n_bytes.sum())), "nll_sum": math.fsum(nll),
                               "bytes": int(n_bytes.sum()), "valid_code_length": key != "cf_published"}
        npz[f"nll_{key}"] = nll
    if write_file:
        ev["per_window_file"] = "eval_cf.windows.npz"
        np.savez(path.parent / "eval_cf.windows.npz", **npz)
    eval_path.write_text(json.dumps(ev))
    return path


def loop_window_bootstrap(cells, n_boot, seed, level=0.95):
    """The documented draw order, one replicate at a time, sums in Python."""
    rng = np.random.default_rng(seed)
    n = len(cells[0][0])
    reps = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, size=n)
        values = [sum(nll[i] for i in idx) / (LN2 * sum(b[i] for i in idx)) for nll, b in cells]
        reps.append(values[0] if len(values) == 1 else values[0] - values[1])
    return tuple(np.quantile(reps, [(1 - level) / 2, (1 + level) / 2]))


def test_window_ci_matches_a_loop_and_scipy():
    rng = np.random.default_rng(1)
    nll, n_bytes = fake_windows(rng, 300, 1.4)
    ci = seed_stats.window_bootstrap([(nll, n_bytes)], 2000, 7)
    assert ci["estimate"] == pytest.approx(nll.sum() / (LN2 * n_bytes.sum()), rel=1e-12)
    assert (ci["lo"], ci["hi"]) == pytest.approx(loop_window_bootstrap([(nll, n_bytes)], 2000, 7), rel=1e-12)
    ref = stats.bootstrap((nll, n_bytes), lambda a, b, axis=-1: a.sum(axis) / (LN2 * b.sum(axis)), paired=True,
                          vectorized=True, n_resamples=20000, method="percentile", confidence_level=0.95,
                          random_state=np.random.default_rng(3)).confidence_interval
    width = ref.high - ref.low
    assert abs(ci["lo"] - ref.low) < 0.1 * width and abs(ci["hi"] - ref.high) < 0.1 * width
    # Reproducible with the same seed, and the seed matters.
    assert seed_stats.window_bootstrap([(nll, n_bytes)], 2000, 7) == ci
    assert seed_stats.window_bootstrap([(nll, n_bytes)], 2000, 8)["lo"] != ci["lo"]


def test_paired_window_ci_matches_a_loop_and_scipy():
    rng = np.random.default_rng(2)
    nll_a, n_bytes = fake_windows(rng, 300, 1.4)
    # Same windows: the second cell shares each window's difficulty, plus a small own noise.
    nll_b = nll_a + n_bytes * LN2 * (0.05 + 0.02 * rng.standard_normal(300))
    ci = seed_stats.window_bootstrap([(nll_b, n_bytes), (nll_a, n_bytes)], 2000, 5)
    assert ci["estimate"] == pytest.approx((nll_b.sum() - nll_a.sum()) / (LN2 * n_bytes.sum()), rel=1e-12)
    assert (ci["lo"], ci["hi"]) == pytest.approx(
        loop_window_bootstrap([(nll_b, n_bytes), (nll_a, n_bytes)], 2000, 5), rel=1e-10)

    def diff(b, a, nb, axis=-1):
        return (b.sum(axis) - a.sum(axis)) / (LN2 * nb.sum(axis))

    ref = stats.bootstrap((nll_b, nll_a, n_bytes), diff, paired=True, vectorized=True, n_resamples=20000,
                          method="percentile", random_state=np.random.default_rng(4)).confidence_interval
    width = ref.high - ref.low
    assert abs(ci["lo"] - ref.low) < 0.1 * width and abs(ci["hi"] - ref.high) < 0.1 * width
    # Pairing is what makes it narrow: the two cells' own CIs are far wider than the difference's.
    own = seed_stats.window_bootstrap([(nll_a, n_bytes)], 2000, 5)
    assert ci["hi"] - ci["lo"] < 0.3 * (own["hi"] - own["lo"])


def build(tmp_path, seeds=(1, 2, 3), control_file=True):
    """Shared (w=0.3) and control cells per seed; the two cells of a seed share their windows."""
    rng = np.random.default_rng(5)
    paths, data = [], {}
    offsets = rng.integers(0, 10**6, size=50)  # one window set for every seed, as eval_cf.py draws them
    _, n_bytes = fake_windows(rng, 50, 1.36)
    for seed in seeds:
        nll_c = n_bytes * LN2 * (1.36 + 0.01 * seed + 0.05 * rng.standard_normal(50))
        shared = {key: (nll_c + n_bytes * LN2 * (delta + 0.01 * rng.standard_normal(50)), n_bytes)
                  for key, delta in (("ar", 0.03), ("cf_published", -0.1), ("cf_valid", 0.9))}
        control = {"ar": (nll_c, n_bytes), "cf_published": shared["cf_published"], "cf_valid": shared["cf_valid"]}
        paths.append(windows_cell(tmp_path, f"s{seed}", weight=0.3, seed=seed, arrays=shared, offsets=offsets))
        paths.append(windows_cell(tmp_path, f"c{seed}", weight=0.0, seed=seed, arrays=control, offsets=offsets,
                                  write_file=control_file or seed != seeds[0]))
        data[seed] = (shared, control)
    return paths, data


def test_summary_with_per_window_files(tmp_path, capsys):
    paths, data = build(tmp_path / "cells")
    out_json = tmp_path / "s.json"
    assert summarize.main([str(p) for p in paths] + ["--json_out", str(out_json), "--n_boot", "500",
                                                     "--boot_seed", "3"]) == 0
    text = capsys.readouterr().out
    summary = json.loads(out_json.read_text())
    assert summary["bootstrap"] == {"n_boot": 500, "seed": 3, "level": 0.95, "rng": "numpy default_rng(seed)"}
    # Per-cell CIs: the loop on the same arrays with the same seed.
    ci = next(c for c in summary["window_cis"] if c["cell"] == "s2" and c["metric"] == "cf_valid")
    assert (ci["ci"]["lo"], ci["ci"]["hi"]) == pytest.approx(
        loop_window_bootstrap([data[2][0]["cf_valid"]], 500, 3), rel=1e-10)
    assert "## Bootstrap CIs over windows" in text and "percentile bootstrap over the evaluation windows (500" in text
    # Paired per-seed CIs over windows and the interval over seeds of the ar comparison (same windows).
    test = next(t for t in summary["tests"] if t["metric"] == "ar")
    pair = next(p for p in test["window_pairs"] if p["seed"] == 1)
    assert (pair["ci"]["lo"], pair["ci"]["hi"]) == pytest.approx(
        loop_window_bootstrap([data[1][0]["ar"], data[1][1]["ar"]], 500, 3), rel=1e-10)
    seed_test = test["seed_test"]
    assert seed_test["method"] == "paired t over 3 common seeds"
    # The interval over seeds: scipy's t interval of the three paired differences, widened in
    # quadrature by 1.96 x the sd of a loop that applies each resampled window set to every seed.
    bpb = lambda cell, idx: cell[0][idx].sum() / (LN2 * cell[1][idx].sum())  # noqa: E731
    everything = np.arange(50)
    diffs = [bpb(data[s][0]["ar"], everything) - bpb(data[s][1]["ar"], everything) for s in (1, 2, 3)]
    assert seed_test["per_seed_diffs"] == pytest.approx({str(s): d for s, d in zip((1, 2, 3), diffs)}, rel=1e-12)
    replicates = [np.mean([bpb(data[s][0]["ar"], idx) - bpb(data[s][1]["ar"], idx) for s in (1, 2, 3)])
                  for idx in np.random.default_rng(3).integers(0, 50, size=(500, 50))]
    window_half = stats.norm.ppf(0.975) * np.std(replicates, ddof=1)
    t_half = stats.t.ppf(0.975, 2) * stats.sem(diffs)
    half = math.hypot(t_half, window_half)
    assert (seed_test["ci"]["lo"], seed_test["ci"]["hi"]) == pytest.approx(
        (np.mean(diffs) - half, np.mean(diffs) + half), rel=1e-9)
    assert seed_test["ci"]["method"].startswith("paired t over 3 seeds (df 2) widened by the shared-window")
    assert seed_test["ci"]["lo"] < 0.03 < seed_test["ci"]["hi"]  # the true shift of the fixture
    row = next(line for line in text.splitlines() if line.startswith("| 11L-d512 w=0.3 | Pure-AR BPB |"))
    assert row.endswith(f"| [{seed_test['ci']['lo']:+.4f}, {seed_test['ci']['hi']:+.4f}] |")
    # No arrays leak into the JSON, and the published decoder keeps its label in the new tables.
    assert all("_windows" not in r for r in summary["rows"])
    cf_lines = [line for line in text.splitlines() if line.startswith("|") and "CF BPB" in line]
    assert len(cf_lines) > 6 and all("CF BPB (published; NOT a valid code length)" in line for line in cf_lines)


def test_a_cell_without_the_file_gets_no_ci(tmp_path, capsys):
    paths, _ = build(tmp_path / "cells", control_file=False)
    out_json = tmp_path / "s.json"
    assert summarize.main([str(p) for p in paths] + ["--json_out", str(out_json), "--n_boot", "200"]) == 0
    text = capsys.readouterr().out
    summary = json.loads(out_json.read_text())
    ci = next(c for c in summary["window_cis"] if c["cell"] == "c1" and c["metric"] == "ar")
    assert ci["ci"] is None and ci["reason"] == report_rows.NO_WINDOWS
    test = next(t for t in summary["tests"] if t["metric"] == "ar")
    # One control cell has no file: the interval over seeds is the t interval alone, and says so.
    assert test["seed_test"]["window_term"] == report_rows.NO_WINDOWS
    assert test["seed_test"]["ci"]["method"].endswith("windows not shared, no window term")
    assert next(p for p in test["window_pairs"] if p["seed"] == 1)["ci"] is None
    assert next(p for p in test["window_pairs"] if p["seed"] == 2)["ci"] is not None
    assert "| 1 | Pure-AR BPB | " in text and report_rows.NO_WINDOWS in text


def test_different_windows_get_no_paired_ci(tmp_path, capsys):
    rng = np.random.default_rng(6)
    arrays = {"ar": fake_windows(rng, 20, 1.4)}
    a = windows_cell(tmp_path, "a", weight=0.3, seed=1, arrays=arrays, offsets=np.arange(20))
    b = windows_cell(tmp_path, "b", weight=0.0, seed=1, arrays=arrays, offsets=np.arange(20) + 1)
    out_json = tmp_path / "s.json"
    assert summarize.main([str(a), str(b), "--json_out", str(out_json), "--n_boot", "100"]) == 0
    capsys.readouterr()
    pair = json.loads(out_json.read_text())["tests"][0]["window_pairs"][0]
    assert pair["ci"] is None and "not scored on the same windows" in pair["reason"]


@pytest.mark.parametrize("breakage, message", [
    ("missing", "per-window file named by eval_cf.json not found"),
    ("sum", "nll_ar sums to"),
    ("bytes", "bytes sum to"),
    ("n_boot", "--n_boot must be >= 100"),
])
def test_bad_per_window_input_is_one_error_line(tmp_path, capsys, breakage, message):
    rng = np.random.default_rng(7)
    path = windows_cell(tmp_path, "a", weight=0.3, seed=1, arrays={"ar": fake_windows(rng, 20, 1.4)},
                        offsets=np.arange(20))
    npz = path.parent / "eval_cf.windows.npz"
    argv = [str(path)]
    if breakage == "missing":
        npz.unlink()
    elif breakage in ("sum", "bytes"):
        with np.load(npz) as z:
            arrays = dict(z)
        arrays["nll_ar" if breakage == "sum" else "bytes"][0] += 1
        np.savez(npz, **arrays)
    else:
        argv += ["--n_boot", "10"]
    assert summarize.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


# ----------------------------------------------------------------------------- best valid decoder


def test_best_valid_decoder_per_cell(tmp_path, capsys):
    rng = np.random.default_rng(11)
    n = 60
    offsets = rng.integers(0, 10**6, size=n)
    nll_c, n_bytes = fake_windows(rng, n, 1.36)

    def shifted(delta):  # the control's windows plus a shift in bits per byte and a little noise
        return nll_c + n_bytes * LN2 * (delta + 0.01 * rng.standard_normal(n)), n_bytes

    # cf_published is the lowest, but is no code length: never a candidate.
    shared = {"ar": shifted(0.03), "cf_published": shifted(-0.5), "cf_valid": shifted(0.02),
              "cf_valid_mix": shifted(-0.01)}
    control = {"ar": (nll_c, n_bytes), "cf_valid": shifted(0.05)}
    paths = [windows_cell(tmp_path, "s1", weight=0.3, seed=1, arrays=shared, offsets=offsets),
             windows_cell(tmp_path, "c1", weight=0.0, seed=1, arrays=control, offsets=offsets),
             # Seed 2: the control was scored on other windows, so no paired CI.
             windows_cell(tmp_path, "s2", weight=0.3, seed=2, arrays=shared, offsets=offsets),
             windows_cell(tmp_path, "c2", weight=0.0, seed=2, arrays=control, offsets=offsets + 1)]
    out_json = tmp_path / "s.json"
    assert summarize.main([str(p) for p in paths] + ["--json_out", str(out_json), "--n_boot", "300",
                                                     "--boot_seed", "4"]) == 0
    text = capsys.readouterr().out
    best = {b["cell"]: b for b in json.loads(out_json.read_text())["best_valid"]}

    # Independently: each valid decoder's BPB from the arrays, the smallest one, its difference
    # to the control's ar, and the paired CI from the loop of the documented draw order.
    def bpb(cell):
        return cell[0].sum() / (LN2 * cell[1].sum())

    valid = {k: bpb(v) for k, v in shared.items() if k != "cf_published"}
    want = min(valid, key=valid.get)
    assert want == "cf_valid_mix" and bpb(shared["cf_published"]) < valid[want]
    s1 = best["s1"]
    assert s1["best_decoder"] == want and s1["best_bpb"] == pytest.approx(valid[want], rel=1e-12)
    assert s1["candidates"] == pytest.approx(valid, rel=1e-12)
    (comparison,) = s1["comparisons"]
    assert comparison["control_cell"] == "c1"
    assert comparison["diff"] == pytest.approx(valid[want] - bpb(control["ar"]), rel=1e-9)
    assert (comparison["ci"]["lo"], comparison["ci"]["hi"]) == pytest.approx(
        loop_window_bootstrap([shared[want], control["ar"]], 300, 4), rel=1e-10)
    assert comparison["ci"]["lo"] < -0.01 < comparison["ci"]["hi"]  # the fixture's true shift
    (other,) = best["s2"]["comparisons"]
    assert other["ci"] is None and "not scored on the same windows" in other["reason"]
    # A control gets its own best, compared with nothing; the table has one row per comparison.
    assert best["c1"]["best_decoder"] == "ar" and best["c1"]["comparisons"] == []
    assert "## Best valid decoder per cell" in text and "paired percentile bootstrap over windows (300" in text
    row = next(line for line in text.splitlines() if line.startswith("| 11L-d512 w=0.3 | 11L | 1 | cf_valid_mix |"))
    assert row.endswith(f"| {comparison['diff']:+.4f} | [{comparison['ci']['lo']:+.4f}, "
                        f"{comparison['ci']['hi']:+.4f}] |")
