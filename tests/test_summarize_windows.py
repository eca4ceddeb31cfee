"""scripts/summarize.py with eval_cf.py's per-window files: bootstrap CIs over windows, paired CIs
between cells on the same windows, the hierarchical bootstrap over seeds and windows. Each is
checked against an independent computation: a loop written here from the documented draw order
(bit-exact), and scipy.stats.bootstrap (a different resampler: agreement within Monte Carlo error).
The per-window fixture data are generated here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
# scipy is a test dependency (the dev extra): an independent implementation of the statistics.
from scipy import stats

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
    ci = summarize.window_bootstrap([(nll, n_bytes)], 2000, 7)
    assert ci["estimate"] == pytest.approx(nll.sum() / (LN2 * n_bytes.sum()), rel=1e-12)
    assert (ci["lo"], ci["hi"]) == pytest.approx(loop_window_bootstrap([(nll, n_bytes)], 2000, 7), rel=1e-12)
    ref = stats.bootstrap((nll, n_bytes), lambda a, b, axis=-1: a.sum(axis) / (LN2 * b.sum(axis)), paired=True,
                          vectorized=True, n_resamples=20000, method="percentile", confidence_level=0.95,
                          random_state=np.random.default_rng(3)).confidence_interval
    width = ref.high - ref.low
    assert abs(ci["lo"] - ref.low) < 0.1 * width and abs(ci["hi"] - ref.high) < 0.1 * width
    # Reproducible with the same seed, and the seed matters.
    assert summarize.window_bootstrap([(nll, n_bytes)], 2000, 7) == ci
    assert summarize.window_bootstrap([(nll, n_bytes)], 2000, 8)["lo"] != ci["lo"]


def test_paired_window_ci_matches_a_loop_and_scipy():
    rng = np.random.default_rng(2)
    nll_a, n_bytes = fake_windows(rng, 300, 1.4)
    # Same windows: the second cell shares each window's difficulty, plus a small own noise.
    nll_b = nll_a + n_bytes * LN2 * (0.05 + 0.02 * rng.standard_normal(300))
    ci = summarize.window_bootstrap([(nll_b, n_bytes), (nll_a, n_bytes)], 2000, 5)
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
    own = summarize.window_bootstrap([(nll_a, n_bytes)], 2000, 5)
    assert ci["hi"] - ci["lo"] < 0.3 * (own["hi"] - own["lo"])


def loop_hierarchical(group, control, n_boot, seed, same=None, level=0.95):
    """The documented draw order of summarize.hierarchical_bootstrap, written out."""
    rng = np.random.default_rng(seed)

    def bpb(cell, idx):
        return sum(cell[0][i] for i in idx) / (LN2 * sum(cell[1][i] for i in idx))

    def one(cell):
        return bpb(cell, rng.integers(0, len(cell[0]), size=len(cell[0])))

    reps = []
    for _ in range(n_boot):
        if same is not None:
            diffs = []
            for j in rng.integers(0, len(group), size=len(group)):
                w = rng.integers(0, len(group[j][0]), size=len(group[j][0]))
                cw = w if same[j] else rng.integers(0, len(control[j][0]), size=len(control[j][0]))
                diffs.append(bpb(group[j], w) - bpb(control[j], cw))
            reps.append(sum(diffs) / len(diffs))
        else:
            a = [one(group[j]) for j in rng.integers(0, len(group), size=len(group))]
            b = [one(control[j]) for j in rng.integers(0, len(control), size=len(control))]
            reps.append(sum(a) / len(a) - sum(b) / len(b))
    return tuple(np.quantile(reps, [(1 - level) / 2, (1 + level) / 2]))


def test_hierarchical_bootstrap_matches_a_loop():
    rng = np.random.default_rng(3)
    group = [fake_windows(rng, 40, 1.40 + 0.01 * k) for k in range(4)]
    control = [fake_windows(rng, 40, 1.36 + 0.01 * k) for k in range(3)]
    out = summarize.hierarchical_bootstrap(group, control, 300, 11)
    assert (out["lo"], out["hi"]) == pytest.approx(loop_hierarchical(group, control, 300, 11), rel=1e-10)
    paired_control = [fake_windows(rng, 40, 1.36) for _ in range(4)]
    same = [True, False, True, False]
    out = summarize.hierarchical_bootstrap(group, paired_control, 300, 11, same_windows=same)
    assert (out["lo"], out["hi"]) == pytest.approx(loop_hierarchical(group, paired_control, 300, 11, same),
                                                   rel=1e-10)


def test_hierarchical_bootstrap_reduces_to_scipys_seed_bootstrap():
    """Windows whose NLL is exactly proportional to their bytes carry no window noise: resampling
    them changes nothing, and the hierarchical bootstrap is scipy's two-sample bootstrap of the
    difference of seed means."""
    rng = np.random.default_rng(4)
    g_values, c_values = 1.40 + 0.02 * rng.standard_normal(8), 1.36 + 0.02 * rng.standard_normal(7)

    def flat(v):
        n_bytes = rng.integers(100, 200, size=30).astype(float)
        return n_bytes * LN2 * v, n_bytes

    out = summarize.hierarchical_bootstrap([flat(v) for v in g_values], [flat(v) for v in c_values], 4000, 0)
    assert out["estimate"] == pytest.approx(g_values.mean() - c_values.mean(), rel=1e-9)
    ref = stats.bootstrap((g_values, c_values), lambda a, b, axis=-1: a.mean(axis) - b.mean(axis),
                          vectorized=True, n_resamples=40000, method="percentile",
                          random_state=np.random.default_rng(1)).confidence_interval
    width = ref.high - ref.low
    assert abs(out["lo"] - ref.low) < 0.05 * width and abs(out["hi"] - ref.high) < 0.05 * width


def build(tmp_path, seeds=(1, 2, 3), control_file=True):
    """Shared (w=0.3) and control cells per seed; the two cells of a seed share their windows."""
    rng = np.random.default_rng(5)
    paths, data = [], {}
    for seed in seeds:
        offsets = rng.integers(0, 10**6, size=50)
        nll_c, n_bytes = fake_windows(rng, 50, 1.36)
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
    # Paired per-seed CIs and the hierarchical CI of the ar comparison (paired by seed, same windows).
    test = next(t for t in summary["tests"] if t["metric"] == "ar")
    pair = next(p for p in test["window_pairs"] if p["seed"] == 1)
    assert (pair["ci"]["lo"], pair["ci"]["hi"]) == pytest.approx(
        loop_window_bootstrap([data[1][0]["ar"], data[1][1]["ar"]], 500, 3), rel=1e-10)
    assert test["seed_test"]["method"] == "paired t over 3 common seeds"
    hier = test["hierarchical_bootstrap"]
    assert hier["paired_by_seed"] is True
    expected = loop_hierarchical([data[s][0]["ar"] for s in (1, 2, 3)], [data[s][1]["ar"] for s in (1, 2, 3)],
                                 500, 3, same=[True] * 3)
    assert (hier["lo"], hier["hi"]) == pytest.approx(expected, rel=1e-10)
    assert hier["lo"] < 0.03 < hier["hi"]  # the true shift of the fixture
    row = next(line for line in text.splitlines() if line.startswith("| 11L-d512 w=0.3 | Pure-AR BPB |"))
    assert row.endswith(f"| [{hier['lo']:+.4f}, {hier['hi']:+.4f}] |")
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
    assert ci["ci"] is None and ci["reason"] == summarize.NO_WINDOWS
    test = next(t for t in summary["tests"] if t["metric"] == "ar")
    assert test["hierarchical_bootstrap"] is None and test["hierarchical_reason"] == summarize.NO_WINDOWS
    assert next(p for p in test["window_pairs"] if p["seed"] == 1)["ci"] is None
    assert next(p for p in test["window_pairs"] if p["seed"] == 2)["ci"] is not None
    assert "| 1 | Pure-AR BPB | " in text and summarize.NO_WINDOWS in text


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
