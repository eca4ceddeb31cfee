"""scripts/summarize.py: the results table, seed-group statistics, the t-tests (checked against
closed forms, tabulated critical values and an independent numerical integration) and its errors."""

from __future__ import annotations

import json
import math

import pytest
# scipy is a test dependency (the dev extra): an independent implementation of the statistics.
from scipy import stats

from meadow_golf.report import rows as report_rows
from meadow_golf.report import stats as seed_stats
from meadow_golf.report import summarize

CF = "CF BPB (published; NOT a valid code length)"
HEADER = ("| run | stands in for | seed | params | objective | Pure-AR BPB (lower is better) "
          "| CF BPB (published; NOT a valid code length), lower is better "
          "| cf_valid BPB (lower is better) | val_bpb (trainer), lower is better | steps | tokens seen |")


def make_cell(root, name, *, scale, weight, seed, params, steps, ar=None, cf_published=None, cf_valid=None,
              val_bpb=1.5, batch_tokens=65536, match="wallclock", matched_to="", num_layers=11, model_dim=512,
              train_budget_secs=540.0):
    """A cell folder as the orchestrators leave it: results.json, cell.json, eval_cf.json (if scored)."""
    cell = root / name
    cell.mkdir(parents=True)
    train = {"seed": seed, "cdm_weight": weight, "seq_len": 1024, "batch_tokens": batch_tokens,
             "train_budget_secs": train_budget_secs, "steps": 0, "val_tokens": 1048576}
    results = {"final_val_bpb": val_bpb, "steps": steps, "tokens_seen": steps * batch_tokens,
               "train_seconds": 540.0, "params": params, "cdm_weight": weight,
               "config": {"model": {"num_layers": num_layers, "model_dim": model_dim}, "train": train}}
    (cell / "results.json").write_text(json.dumps(results))
    (cell / "cell.json").write_text(json.dumps({"name": name, "scale": scale, "backend": "torch", "preset": "h100",
                                                "match": match, "matched_to": matched_to, "recipe": []}))
    if ar is not None:
        decoders = {"ar": {"bpb": ar, "valid_code_length": True},
                    "cf_published": {"bpb": cf_published, "valid_code_length": False},
                    "cf_valid": {"bpb": cf_valid, "valid_code_length": True}}
        (cell / "eval_cf.json").write_text(json.dumps({
            "decoders": decoders, "protocol": {"mode": "random", "n_seqs": 500, "seq_len": 1024},
            "consistency": {"passed": True}}))
    return cell / "results.json"


# ----------------------------------------------------------------------------- Student t


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0, 2.5, 7.0, 40.0])
def test_t_distribution_matches_closed_forms(t):
    # df = 1 (Cauchy): P(|T| >= t) = 1 - 2/pi * atan(t); df = 2: 1 - t / sqrt(2 + t^2).
    assert seed_stats.t_two_sided_p(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), abs=1e-12)
    assert seed_stats.t_two_sided_p(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-12)
    assert seed_stats.t_two_sided_p(-t, 2) == seed_stats.t_two_sided_p(t, 2)
    assert seed_stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)


@pytest.mark.parametrize("t, df, p", [
    # Two-sided critical values from the standard t table.
    (12.706205, 1, 0.05), (4.302653, 2, 0.05), (2.776445, 4, 0.05), (2.228139, 10, 0.05),
    (2.042272, 30, 0.05), (4.604095, 4, 0.01), (3.169273, 10, 0.01), (2.131847, 4, 0.10),
])
def test_t_distribution_matches_tabulated_critical_values(t, df, p):
    assert seed_stats.t_two_sided_p(t, df) == pytest.approx(p, rel=1e-5)


def test_t_distribution_matches_scipy():
    for t in (0.1, 1.7, 3.3, 9.0):
        for df in (1, 2.5, 4, 7.3, 50):
            assert seed_stats.t_two_sided_p(t, df) == pytest.approx(2 * stats.t.sf(t, df), rel=1e-9, abs=1e-15)


def integrated_two_sided_p(t: float, df: int, n: int = 20000) -> float:
    """1 - 2 * integral_0^|t| of the Student t density (Simpson's rule): independent of summarize."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def pdf(x):
        return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))

    h = abs(t) / n
    s = pdf(0) + pdf(abs(t)) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, n))
    return 1 - 2 * s * h / 3


# ----------------------------------------------------------------------------- the 6-run table


def test_runs_table_is_exact(tmp_path, capsys):
    paths = [
        make_cell(tmp_path, "11L_w0.3_s1337", scale="11L", weight=0.3, seed=1337, params=28_400_000, steps=1604,
                  ar=1.4708, cf_published=1.3301, cf_valid=1.5012, val_bpb=1.4711),
        make_cell(tmp_path, "5L_w0_s1337", scale="5L", weight=0.0, seed=1337, params=4_300_000, steps=5351,
                  ar=1.4479, cf_published=2.4371, cf_valid=2.5001, val_bpb=1.4480, num_layers=5, model_dim=256),
        make_cell(tmp_path, "5L_w1.0_s1337", scale="5L", weight=1.0, seed=1337, params=4_300_000, steps=1500,
                  num_layers=5, model_dim=256, val_bpb=1.5841),  # trained, not evaluated
        make_cell(tmp_path, "11L_w0_s1337", scale="11L", weight=0.0, seed=1337, params=28_400_000, steps=5351,
                  ar=1.3574, cf_published=2.3947, cf_valid=2.4100, val_bpb=1.3570),
    ]
    assert summarize.main([str(p) for p in paths] + ["--title", "T"]) == 0
    out = capsys.readouterr().out
    expected = "\n".join([
        "# T",
        "",
        HEADER,
        "|---|---|---|---|---|---|---|---|---|---|---|",
        "| 5L-d256 w=0 (control) | 5L | 1337 | 4.3 M | AR only | 1.4479 | 2.4371 | 2.5001 | 1.4480 | 5351 | 350,683,136 |",
        "| 5L-d256 w=1.0 | 5L | 1337 | 4.3 M | AR + 1.0 × D3PM | — | — | — | 1.5841 | 1500 | 98,304,000 |",
        "| 11L-d512 w=0 (control) | 11L | 1337 | 28.4 M | AR only | 1.3574 | 2.3947 | 2.4100 | 1.3570 | 5351 | 350,683,136 |",
        "| 11L-d512 w=0.3 | 11L | 1337 | 28.4 M | AR + 0.3 × D3PM | 1.4708 | 1.3301 | 1.5012 | 1.4711 | 1604 | 105,119,744 |",
        "",
    ])
    assert out.startswith(expected)
    assert "NOT a valid code length (METHOD.md §6)" in out
    assert "## Seed groups" not in out and "## t-tests" not in out  # one seed per configuration


# ----------------------------------------------------------------------------- seed groups and t-tests

# METHOD.md §7: the 5-seed CF BPB of 11L w=0.3 (mean 1.3009, sample std 0.0051); control seed 1337
# Pure-AR 1.3214, plus two control seeds made up for the test.
SHARED = {1337: 1.2924, 42: 1.3027, 2024: 1.3060, 7: 1.3025, 100: 1.3007}
SHARED_AR = {1337: 1.4700, 42: 1.4690, 2024: 1.4750, 7: 1.4712, 100: 1.4688}
SHARED_VALID = {1337: 1.4850, 42: 1.4801, 2024: 1.4903, 7: 1.4822, 100: 1.4870}
CONTROL = {1337: 1.3214, 42: 1.3251, 2024: 1.3190}


def seed_cells(root, control_seeds=CONTROL):
    paths = []
    for seed, cfp in SHARED.items():
        paths.append(make_cell(root, f"11L_w0.3_s{seed}", scale="11L", weight=0.3, seed=seed, params=28_400_000,
                               steps=1604, ar=SHARED_AR[seed], cf_published=cfp, cf_valid=SHARED_VALID[seed]))
    for seed in control_seeds:
        paths.append(make_cell(root, f"11L_w0_s{seed}", scale="11L", weight=0.0, seed=seed, params=28_400_000,
                               steps=5351, ar=CONTROL[seed], cf_published=2.39, cf_valid=2.41))
    return paths


def hand_stats(values):
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return n, mean, sd


def test_seed_groups_and_paired_t_test(tmp_path, capsys):
    """Seeds 1337, 42, 2024 are in both groups: the seed test pairs them (scipy's ttest_rel)."""

    out_dir = tmp_path / "out"
    assert summarize.main([str(p) for p in seed_cells(tmp_path / "cells")] + ["--out_dir", str(out_dir)]) == 0
    text = capsys.readouterr().out
    summary = json.loads((out_dir / "results.json").read_text())
    assert (out_dir / "results.md").read_text() in text

    n, mean, sd = hand_stats(list(SHARED.values()))
    assert (round(mean, 4), round(sd, 4)) == (1.3009, 0.0051)  # the numbers METHOD.md §7 reports
    nc, mu0, sdc = hand_stats(list(CONTROL.values()))
    groups = {g["label"]: g for g in summary["groups"]}
    shared, control = groups["11L-d512 w=0.3"], groups["11L-d512 w=0 (control)"]
    assert shared["n"] == 5 and control["n"] == 3 and control["seeds"] == [1337, 42, 2024]
    assert shared["stats"]["cf_published"]["mean"] == pytest.approx(mean, abs=1e-12)
    assert shared["stats"]["cf_published"]["std"] == pytest.approx(sd, abs=1e-12)
    assert control["stats"]["ar"]["std"] == pytest.approx(sdc, abs=1e-12)

    tests = {t["metric"]: t for t in summary["tests"]}
    assert set(tests) == {"cf_valid", "ar", "cf_published", "val_bpb"}
    common = [1337, 42, 2024]
    for metric, values in (("cf_published", SHARED), ("cf_valid", SHARED_VALID), ("ar", SHARED_AR)):
        test = tests[metric]["seed_test"]
        assert test["method"] == "paired t over 3 common seeds" and test["seeds"] == common
        ref = stats.ttest_rel([values[s] for s in common], [CONTROL[s] for s in common])
        assert test["result"]["t"] == pytest.approx(ref.statistic, rel=1e-10)
        assert test["result"]["p"] == pytest.approx(ref.pvalue, rel=1e-9)
        assert test["result"]["df"] == 2
        # diff is the mean of the paired differences over the COMMON seeds only (not the 5-seed
        # mean minus the 3-seed mean), and every seed's own difference is kept.
        paired = [values[s] - CONTROL[s] for s in common]
        assert tests[metric]["diff"] == test["diff"] == pytest.approx(sum(paired) / 3, abs=1e-12)
        assert test["per_seed_diffs"] == pytest.approx({str(s): d for s, d in zip(common, paired)}, abs=1e-12)
        # No per-window files here: the t interval with df 2 (scipy's), named as such.
        t_ci = stats.t.interval(0.95, 2, loc=sum(paired) / 3, scale=stats.sem(paired))
        assert (test["ci"]["lo"], test["ci"]["hi"]) == pytest.approx(t_ci, rel=1e-9)
        assert test["ci"]["method"] == "paired t over 3 seeds (df 2); windows not shared, no window term"
        assert test["window_term"] == summarize.compare.NO_WINDOWS
    t_pub = tests["cf_published"]["seed_test"]["result"]
    row = next(line for line in text.splitlines() if line.startswith(f"| 11L-d512 w=0.3 | {CF}"))
    assert f"| paired t over 3 common seeds | {t_pub['t']:.3f} | 2 | {summarize.tables.p_text(t_pub['p'])} |" in row
    assert "| 11L-d512 w=0.3 | 11L | 5 | 1337, 42, 2024, 7, 100 | 1.4708 ± 0.0025 | 1.3009 ± 0.0051 |" in text
    assert "one-sample" not in text.lower() and "mu0" not in text  # no test against a mean taken as known
    assert "diff = the mean of the per-seed differences over those common seeds only" in text


def test_unpaired_seeds_get_welch(tmp_path, capsys):
    control = {1: 1.3214, 2: 1.3251, 3: 1.3190}
    paths = seed_cells(tmp_path, control_seeds={})
    for seed, value in control.items():
        paths.append(make_cell(tmp_path, f"11L_w0_s{seed}", scale="11L", weight=0.0, seed=seed, params=28_400_000,
                               steps=5351, ar=value, cf_published=2.39, cf_valid=2.41))
    out_json = tmp_path / "s.json"
    assert summarize.main([str(p) for p in paths] + ["--json_out", str(out_json)]) == 0
    capsys.readouterr()
    tests = {t["metric"]: t for t in json.loads(out_json.read_text())["tests"]}
    ref = stats.ttest_ind(list(SHARED_VALID.values()), list(control.values()), equal_var=False)
    test = tests["cf_valid"]["seed_test"]
    assert test["method"] == "unpaired (Welch t)" and test["paired"] is False and test["per_seed_diffs"] == {}
    assert test["result"]["t"] == pytest.approx(ref.statistic, rel=1e-10)
    assert test["result"]["p"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert test["ci"]["method"].startswith("unpaired (Welch t")


def test_single_control_seed_gives_no_seed_test(tmp_path, capsys):
    """The original's situation: one control seed, one seed in common. Its seed-to-seed variance is
    unknown, so no seed-level test is made (a one-sample test against it would treat it as exact)."""
    assert summarize.main([str(p) for p in seed_cells(tmp_path, control_seeds={1337: 1.3214})]) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("| 11L-d512 w=0.3 | cf_valid BPB"))
    # The one common seed's own difference, with no test over seeds (and no window file: no interval).
    assert "| 1337: " in row and "| one common seed: no test over seeds: unavailable (no per-window file) | — | — | — |" in row


def test_token_matched_control_is_its_own_group(tmp_path, capsys):
    paths = seed_cells(tmp_path, control_seeds={1337: 1.3214})
    paths.append(make_cell(tmp_path, "11L_w0_s1337_tok", scale="11L", weight=0.0, seed=1337, params=28_400_000,
                           steps=1604, ar=1.3800, cf_published=2.5, cf_valid=2.6, match="tokens",
                           matched_to="11L_w0.3_s1337"))
    out_json = tmp_path / "s.json"
    assert summarize.main([str(p) for p in paths] + ["--json_out", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "| 11L-d512 w=0 (control, token-matched) | 11L | 1337 |" in text
    assert "11L-d512 w=0 (control, token-matched) seed 1337 ← 11L_w0.3_s1337 (105,119,744 tokens)" in text
    controls = {t["control"] for t in json.loads(out_json.read_text())["tests"]}
    assert controls == {"11L-d512 w=0 (control)", "11L-d512 w=0 (control, token-matched)"}


def test_plot_is_a_valid_png_and_every_bpb_table_says_lower_is_better(tmp_path, capsys):
    # Issue 13 item 12: matplotlib is a dependency, so the plot is always drawn; a decodable PNG.
    import matplotlib.image

    out_dir = tmp_path / "out"
    assert summarize.main([str(p) for p in seed_cells(tmp_path / "cells")] + ["--out_dir", str(out_dir)]) == 0
    text = capsys.readouterr().out
    assert "results.png: written" in text
    png = (out_dir / "results.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    image = matplotlib.image.imread(out_dir / "results.png")
    assert image.shape[:2] == (height, width) and width > 100 and height > 100
    assert image.std() > 0  # something is drawn
    tables = _tables(text)
    assert len(tables) >= 3
    for header in (t[0] for t in tables):
        assert "lower is better" in header or "< 0" in header, header


def _tables(text: str) -> list[list[str]]:
    """Each markdown table of the output as its lines (the header first)."""
    from test_record_tables import md_tables

    return md_tables(text)


def test_folder_arguments_and_the_alternative_eval_name(tmp_path, capsys):
    path = make_cell(tmp_path, "a", scale="5L", weight=0.3, seed=1, params=84_809, steps=4, ar=4.2, cf_published=4.3,
                     cf_valid=4.4, batch_tokens=256)
    (path.parent / "eval_cf.json").rename(path.parent / "final_model.eval_cf.json")
    assert summarize.main([str(path.parent)]) == 0
    assert "| 11L-d512 w=0.3 | 5L | 1 | 84.8 k | AR + 0.3 × D3PM | 4.2000 | 4.3000 | 4.4000 | 1.5000 | 4 | 1,024 |" in \
        capsys.readouterr().out


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    ("{not json", "unreadable JSON"),
    ('{"steps": 3}', "not a trainer results.json"),
])
def test_bad_input_is_one_error_line(tmp_path, capsys, content, message):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    assert summarize.main([str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


# ----------------------------------------------------------------------------- labels


def test_real_size_and_step_matching_labels(tmp_path, capsys):
    # A CPU stand-in (3L d=128 for "5L"): named by its size, the scale it stands in for apart.
    # Its control's cell.json says wallclock (written before the steps label existed) but no clock
    # ran (train_budget_secs 0): the step cap decided, so the summary says steps.
    paths = [make_cell(tmp_path, "5L_w0.3_s1", scale="5L", weight=0.3, seed=1, params=500_000, steps=4, ar=2.0,
                       cf_published=1.9, cf_valid=2.1, num_layers=3, model_dim=128, train_budget_secs=0.0),
             make_cell(tmp_path, "5L_w0_s1", scale="5L", weight=0.0, seed=1, params=500_000, steps=4, ar=1.9,
                       cf_published=1.8, cf_valid=2.0, num_layers=3, model_dim=128, train_budget_secs=0.0),
             make_cell(tmp_path, "11L_w0_s1", scale="11L", weight=0.0, seed=1, params=900_000, steps=4, ar=1.8,
                       cf_published=1.7, cf_valid=1.9, num_layers=4, model_dim=192, match="steps",
                       train_budget_secs=0.0),
             make_cell(tmp_path, "11L_w0_s2", scale="11L", weight=0.0, seed=2, params=900_000, steps=4, ar=1.8,
                       cf_published=1.7, cf_valid=1.9, num_layers=4, model_dim=192)]  # a clock ran: wallclock
    out_json = tmp_path / "s.json"
    assert summarize.main([str(p) for p in paths] + ["--json_out", str(out_json)]) == 0
    text = capsys.readouterr().out
    rows = {r["cell"]: r for r in json.loads(out_json.read_text())["rows"]}
    assert (rows["5L_w0_s1"]["size"], rows["5L_w0_s1"]["stands_in_for"], rows["5L_w0_s1"]["match"]) == \
        ("3L-d128", "5L", "steps")
    assert rows["11L_w0_s1"]["match"] == "steps" and rows["11L_w0_s2"]["match"] == "wallclock"
    assert rows["5L_w0.3_s1"]["run"] == "3L-d128 w=0.3" and rows["5L_w0.3_s1"]["match"] is None
    assert "| 3L-d128 w=0 (control, step-matched) | 5L | 1 | 500.0 k |" in text
    assert "| 4L-d192 w=0 (control, step-matched) | 11L | 1 |" in text
    assert "| 4L-d192 w=0 (control) | 11L | 2 |" in text
    assert report_rows.effective_match("wallclock", 0) == "steps"
    assert report_rows.effective_match("wallclock", 300.0) == "wallclock"
    assert report_rows.effective_match("tokens", 0) == "tokens"
