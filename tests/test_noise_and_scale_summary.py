"""The summaries of the two 2026-12-01 experiments (scripts/meadow_golf/report/summarize.py, scale_fit.py):
absorbing-noise cells compared with the control of their size, the bidirectional-pass table with
the ELBO bound and the entropy floor, the per-size Pure-AR tax and the fitted line against model
size. Each result is checked against ground truth built into the fake cells (a known tax per
size, an exact line) or an independent implementation (numpy's weighted polyfit, scipy's t)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from meadow_golf.report import scale_fit
from meadow_golf.report import summarize

LN2 = math.log(2)


# ----------------------------------------------------------------------------- the fitted line


def test_weighted_line_equals_numpy_weighted_polyfit():
    rng = np.random.default_rng(3)
    x = np.log10([3e4, 1e5, 4e5, 9e5, 2e6])
    se = rng.uniform(0.005, 0.02, size=x.size)
    y = 0.01 + 0.03 * x + se * rng.standard_normal(x.size) * 3  # scattered beyond its errors
    fit = scale_fit.weighted_line(list(x), list(y), list(se), summarize.t_cdf)
    # numpy weights multiply the residuals, so w = 1/se; cov="unscaled" is (X'WX)^-1, and the
    # default cov=True scales it by chi2 / (k - 2), as the Birge ratio does when it exceeds 1.
    (b, a), cov_scaled = np.polyfit(x, y, 1, w=1 / se, cov=True)
    _, cov_unscaled = np.polyfit(x, y, 1, w=1 / se, cov="unscaled")
    assert fit["slope"] == pytest.approx(b, rel=1e-10) and fit["intercept"] == pytest.approx(a, rel=1e-10)
    assert fit["birge_ratio"] > 1
    assert fit["slope_se"] == pytest.approx(math.sqrt(cov_scaled[0, 0]), rel=1e-9)
    assert fit["chi2"] / fit["df"] == pytest.approx(cov_scaled[0, 0] / cov_unscaled[0, 0], rel=1e-9)
    t = stats.t.ppf(0.975, x.size - 2)
    assert fit["slope_ci"]["lo"] == pytest.approx(b - t * fit["slope_se"], rel=1e-8)
    assert fit["slope_ci"]["hi"] == pytest.approx(b + t * fit["slope_se"], rel=1e-8)


def test_weighted_line_on_points_within_their_errors_keeps_the_plain_se():
    x, se = [4.0, 5.0, 6.0], [0.01, 0.02, 0.01]
    y = [1.0 + 0.5 * v for v in x]  # exactly on a line: chi2 = 0, Birge ratio 0, never scales down
    fit = scale_fit.weighted_line(x, y, se, summarize.t_cdf)
    _, cov_unscaled = np.polyfit(x, y, 1, w=1 / np.asarray(se), cov="unscaled")
    assert fit["slope"] == pytest.approx(0.5, abs=1e-12)
    assert fit["slope_se"] == pytest.approx(math.sqrt(cov_unscaled[0, 0]), rel=1e-12)


@pytest.mark.parametrize("p, df", [(0.975, 1), (0.975, 2), (0.95, 3), (0.995, 7.5), (0.6, 40)])
def test_t_quantile_matches_scipy(p, df):
    assert scale_fit.t_quantile(p, df, summarize.t_cdf) == pytest.approx(stats.t.ppf(p, df), rel=1e-7)


@pytest.mark.parametrize("x, y, se, message", [
    ([1, 2], [1, 2], [0.1, 0.1], "at least 3 points"),
    ([1, 2, 3], [1, 2, 3], [0.1, 0.0, 0.1], "se > 0"),
    ([2, 2, 2], [1, 2, 3], [0.1, 0.1, 0.1], "two distinct x"),
])
def test_weighted_line_refuses_what_it_cannot_fit(x, y, se, message):
    with pytest.raises(ValueError, match=message):
        scale_fit.weighted_line(x, y, se, summarize.t_cdf)


# ----------------------------------------------------------------------------- fake cells


def cell(root, name, *, layers, dim, weight, seed, params, arrays, noise="uniform", elbo=None, offsets=None):
    """A trained and evaluated cell: results.json, cell.json, eval_cf.json whose totals are the sums
    of the per-window arrays (decoder -> (nll nats (N,), bytes (N,))), and the per-window file."""
    path = root / name
    path.mkdir(parents=True)
    mask = noise == "absorbing" and weight > 0
    model = {"num_layers": layers, "model_dim": dim, "mask_token": mask}
    train = {"seed": seed, "cdm_weight": weight, "seq_len": 256, "batch_tokens": 4096, "train_budget_secs": 0.0,
             "steps": 120, "val_tokens": 65536, "noise": noise, "cdm_loss": "plain"}
    results = {"final_val_bpb": 2.0, "steps": 120, "tokens_seen": 120 * 4096, "train_seconds": 10.0,
               "params": params + (dim if mask else 0), "cdm_weight": weight,
               "config": {"model": model, "train": train}}
    (path / "results.json").write_text(json.dumps(results))
    (path / "cell.json").write_text(json.dumps({"name": name, "scale": f"{layers}L{dim}", "backend": "torch",
                                                "preset": "cpu", "match": "steps", "matched_to": "", "recipe": []}))
    n_bytes = next(iter(arrays.values()))[1]
    n = n_bytes.size
    ev = {"decoders": {}, "protocol": {"mode": "random", "n_seqs": n, "seq_len": 256}, "consistency": {},
          "per_window_file": "eval_cf.windows.npz"}
    npz = {"offsets": np.arange(n) * 300 if offsets is None else offsets, "seed": np.int64(42), "bytes": n_bytes}
    for key, (nll, _) in arrays.items():
        ev["decoders"][key] = {"bpb": math.fsum(nll) / (LN2 * int(n_bytes.sum())), "nll_sum": math.fsum(nll),
                               "bytes": int(n_bytes.sum()), "valid_code_length": key != "cf_published"}
        npz[f"nll_{key}"] = nll
    if elbo is not None:
        ev["elbo"] = {"bpb": elbo[0], "bpb_se": elbo[1], "samples_per_window": 8}
    (path / "eval_cf.json").write_text(json.dumps(ev))
    np.savez(path / "eval_cf.windows.npz", **npz)
    return path / "results.json"


def level_windows(rng, n, bpb, spread=0.05):
    n_bytes = rng.integers(600, 900, size=n)
    return n_bytes * LN2 * (bpb + spread * rng.standard_normal(n)), n_bytes


def shifted(windows, delta_bpb, jitter_rng=None):
    """The same windows, every one `delta_bpb` bits per byte higher: the BPB moves by exactly delta.
    With jitter_rng, each window also moves by a random amount that sums to zero over the windows,
    so the cell's BPB still moves by exactly delta while the windows' differences vary."""
    nll, n_bytes = windows
    moved = nll + delta_bpb * LN2 * n_bytes
    if jitter_rng is not None:
        jitter = jitter_rng.standard_normal(nll.size) * 20.0
        moved = moved + (jitter - jitter.mean())
    return moved, n_bytes


def run_summary(tmp_path, paths, *extra):
    out = tmp_path / "out"
    rc = summarize.main(["--out_dir", str(out), "--n_boot", "200", *extra, *map(str, paths)])
    assert rc == 0
    return json.loads((out / "results.json").read_text()), (out / "results.md").read_text(), out


# ----------------------------------------------------------------------------- noise


def test_absorbing_cells_are_compared_with_the_control_of_their_size(tmp_path):
    rng = np.random.default_rng(0)
    base = level_windows(rng, 16, 2.6)
    control = cell(tmp_path, "c", layers=3, dim=96, weight=0, seed=1337, params=500_000, arrays={"ar": base})
    uni = cell(tmp_path, "u", layers=3, dim=96, weight=0.3, seed=1337, params=500_000,
               arrays={"ar": shifted(base, 0.02), "cf_valid": shifted(base, 0.40), "bidir_l2r": shifted(base, 0.30)})
    ab = cell(tmp_path, "a", layers=3, dim=96, weight=0.3, seed=1337, params=500_000, noise="absorbing",
              arrays={"ar": shifted(base, 0.05), "cf_valid": shifted(base, 0.25), "bidir_l2r": shifted(base, 0.20),
                      "bidir_confidence": shifted(base, 0.22)}, elbo=(2.9, 0.04))
    summary, md, out = run_summary(tmp_path, [control, uni, ab])
    runs = {r["cell"]: r for r in summary["rows"]}
    assert runs["a"]["run"] == "3L-d96 w=0.3 absorbing" and runs["u"]["run"] == "3L-d96 w=0.3"
    assert runs["a"]["objective"] == "AR + 0.3 × absorbing-mask" and runs["u"]["objective"] == "AR + 0.3 × D3PM"
    # Both noises are compared with the one control, though the absorbing model has a mask row more.
    best = {b["cell"]: b for b in summary["best_valid"]}
    for name, decoder, diff in (("u", "ar", 0.02), ("a", "ar", 0.05)):
        assert best[name]["best_decoder"] == decoder
        assert [c["control_cell"] for c in best[name]["comparisons"]] == ["c"]
        assert best[name]["comparisons"][0]["diff"] == pytest.approx(diff, abs=1e-9)
    tested = {(t["group"], t["metric"]) for t in summary["tests"]}
    assert ("3L-d96 w=0.3 absorbing", "ar") in tested and ("3L-d96 w=0.3", "ar") in tested
    # The bidirectional-pass table: every chain-rule code and the ELBO with its se.
    bidir = {e["cell"]: e["codes"] for e in summary["bidirectional"]}
    assert bidir["a"]["elbo"] == {"bpb": 2.9, "se": 0.04, "bound": True}
    assert bidir["a"]["bidir_confidence"]["bpb"] == pytest.approx(2.6 + 0.22 + 0, abs=0.05)
    assert "elbo" not in bidir["u"] and "c" not in bidir  # the control ran no bidirectional decoder
    assert "| 3L-d96 w=0.3 absorbing | 1337 |" in md and "2.9000 ± 0.0400" in md
    assert (out / "results.png").is_file() and not (out / "results_scale.png").exists()  # one size: no fit


def test_the_floor_flags_a_code_below_it(tmp_path):
    rng = np.random.default_rng(1)
    base = level_windows(rng, 32, 0.50, spread=0.01)
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"entropy_bits_per_byte": 0.45, "val_entropy_bits_per_byte_sample": 0.449}))
    ok = cell(tmp_path, "ok", layers=2, dim=64, weight=1.0, seed=1, params=1000, noise="absorbing",
              arrays={"ar": base, "bidir_l2r": shifted(base, 0.02)}, elbo=(0.47, 0.01))
    low = cell(tmp_path, "low", layers=2, dim=64, weight=0.3, seed=1, params=1000, noise="absorbing",
               arrays={"ar": base, "bidir_l2r": shifted(base, -0.10)}, elbo=(0.40, 0.01))
    summary, md, _ = run_summary(tmp_path, [ok, low], "--floor_meta", str(meta))
    assert summary["floor"]["bits_per_byte"] == 0.45
    codes = {e["cell"]: e["codes"] for e in summary["bidirectional"]}
    assert codes["ok"]["elbo"]["z"] == pytest.approx((0.47 - 0.45) / 0.01) and not codes["ok"]["elbo"]["below_floor"]
    assert codes["low"]["elbo"]["z"] == pytest.approx(-5.0) and codes["low"]["elbo"]["below_floor"]
    # bidir_l2r at 0.40 bits per byte with a window spread of 0.01: far below 0.45.
    assert codes["low"]["bidir_l2r"]["below_floor"] and not codes["ok"]["bidir_l2r"]["below_floor"]
    assert "BELOW the floor" in md
    # A meta.json without an entropy (a natural corpus) adds no floor.
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    assert summarize.read_floor(plain) is None


# ----------------------------------------------------------------------------- scale


SIZES = ((2, 32, 60_000), (2, 64, 200_000), (3, 96, 450_000), (4, 128, 930_000))


def test_scale_points_and_fit_recover_a_known_tax(tmp_path):
    """Per size the shared cells sit exactly `tax(size)` above their control on every window, with
    tax linear in log10(params): the table must show each tax, and the fit that line's slope."""
    rng = np.random.default_rng(7)
    paths, taxes = [], {}
    for layers, dim, params in SIZES:
        tax = 0.01 + 0.02 * math.log10(params)
        taxes[f"{layers}L-d{dim}"] = tax
        for seed in (1337, 42):
            base = level_windows(rng, 24, 2.5 + 0.3 * rng.standard_normal())
            paths.append(cell(tmp_path, f"{layers}L{dim}_w0_s{seed}", layers=layers, dim=dim, weight=0, seed=seed,
                              params=params, arrays={"ar": base, "cf_valid": shifted(base, 0.5)}))
            paths.append(cell(tmp_path, f"{layers}L{dim}_w0.3_s{seed}", layers=layers, dim=dim, weight=0.3,
                              seed=seed, params=params,
                              arrays={"ar": shifted(base, tax, rng), "cf_valid": shifted(base, tax - 0.01, rng)}))
    summary, md, out = run_summary(tmp_path, paths)
    points = summary["scale_points"]
    assert len(points) == len(SIZES)
    for p in points:
        size = p["group"].split(" ")[0]
        assert p["tax"]["diff"] == pytest.approx(taxes[size], abs=1e-9)
        assert p["best_decoder"] == "cf_valid"  # 0.01 below ar in total
        assert p["best_gap"]["diff"] == pytest.approx(taxes[size] - 0.01, abs=1e-9)
        assert p["tax"]["ci"]["lo"] < taxes[size] < p["tax"]["ci"]["hi"]
    fits = summary["scale_fits"]
    for name in ("tax w=0.3", "best_gap w=0.3"):
        fit = fits[name]["fit"]
        # The four taxes lie exactly on the line, so every weighting gives its slope.
        assert fit["n_points"] == 4 and fit["slope"] == pytest.approx(0.02, abs=1e-9)
        assert fit["chi2"] == pytest.approx(0.0, abs=1e-12) and fit["slope_ci"]["lo"] < 0.02 < fit["slope_ci"]["hi"]
    assert "## Against model size" in md and "slope per decade of params +0.0200" in md
    assert (out / "results_scale.png").stat().st_size > 1000
