"""The recipes of the two 2026-12-01 experiments: their plans (plan_noise in the absorbing-noise
folder's plan.py; plan_wgrid, plan_wgrid_seeds and plan_scale in the share-ratio folder's; the
size-named scales), their refusals, best-weight, and one run of each recipe in the smoke preset
(in this process) whose JSON is checked: the noise ablation's absorbing cells carry the ELBO, and
the grid's extra seeds are those of the weight with the lowest final_val_bpb in the grid's own
results.json files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meadow_golf.recipes import cells as cell_status
from meadow_golf.recipes.plans import plan_scales
from meadow_golf.recipes.presets import RecipeError, scale_flags
from meadow_golf.recipes.settings import resolve
from recipe_run import EXPERIMENTS, plan_module, recipe

PLANS = {"plan_noise": "absorbing_noise", "plan_wgrid": "share_ratio_and_scale", "plan_scale": "share_ratio_and_scale"}


class Planned:
    def __init__(self, returncode, stdout="", stderr=""):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def plan(tmp_path, plan_fn: str, **env) -> Planned:
    """A recipe's settings + a plan, without training: each plan entry and each scale's flags, in the
    bash recipes' old `name|scale|weight|seed|matched_to[|noise]` form."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "meta.json").write_text("{}")
    experiment = PLANS[plan_fn]
    try:
        settings = resolve({"DATA_DIR": str(data), "CKPT_DIR": str(tmp_path / "cells"), **env},
                           EXPERIMENTS[experiment], "t")
        cells = getattr(plan_module(experiment), plan_fn)(settings)
    except RecipeError as e:
        return Planned(1, "", f"error: {e}\n")
    lines = [f"ENTRY {c.name}|{c.scale}|{c.weight}|{c.seed}|{c.matched_to}"
             + (f"|{c.noise or ''}" if plan_fn == "plan_noise" else "") for c in cells]
    lines += [f"FLAGS {s}: {' '.join(scale_flags(settings.preset, s))}" for s in plan_scales(cells)]
    return Planned(0, "\n".join(lines) + "\n")


def entries(proc) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    return [line[6:] for line in proc.stdout.splitlines() if line.startswith("ENTRY ")]


def flags(proc) -> dict[str, str]:
    return dict(line[6:].split(": ", 1) for line in proc.stdout.splitlines() if line.startswith("FLAGS "))


def test_noise_plan_has_both_noises_and_one_control(tmp_path):
    proc = plan(tmp_path, "plan_noise", PRESET="smoke")
    assert entries(proc) == ["2L32_w0.3_s1337|2L32|0.3|1337||uniform", "2L32_w1.0_s1337|2L32|1.0|1337||uniform",
                             "2L32_w0.3_s1337_abs|2L32|0.3|1337||absorbing",
                             "2L32_w1.0_s1337_abs|2L32|1.0|1337||absorbing", "2L32_w0_s1337|2L32|0|1337||"]
    assert flags(proc) == {"2L32": "--num_layers 2 --model_dim 32 --num_heads 4 --num_kv_heads 2 --bigram_dim 16 "
                                   "--xsa_last_n 1"}
    elbo = entries(plan(tmp_path, "plan_noise", PRESET="smoke", CDM_LOSS="elbo", NOISES="absorbing"))
    assert [e.split("|")[0] for e in elbo] == ["2L32_w0.3_s1337_abs_elbo", "2L32_w1.0_s1337_abs_elbo", "2L32_w0_s1337"]


def test_size_names_give_the_original_xsa_rule_on_every_preset(tmp_path):
    proc = plan(tmp_path, "plan_scale", PRESET="h100")
    assert [e.split("|")[0] for e in entries(proc)][:2] == ["5L256_w0.3_s1337", "5L256_w0_s1337"]
    # xsa_last_n = max(1, (L + 1) // 3): 2 at 5 layers and 4 at 11, as the original's two sizes.
    assert flags(proc) == {f"{n}L{d}": f"--num_layers {n} --model_dim {d} --bigram_dim 128 --xsa_last_n {x}"
                           for n, d, x in ((5, 256, 2), (7, 384, 2), (9, 448, 3), (11, 512, 4), (13, 640, 4))}
    cpu = plan(tmp_path, "plan_scale", PRESET="cpu", SWEEP_SCALES="2L64 11L", SEEDS="7")
    assert entries(cpu) == ["2L64_w0.3_s7|2L64|0.3|7|", "2L64_w0_s7|2L64|0|7|", "11L_w0.3_s7|11L|0.3|7|",
                            "11L_w0_s7|11L|0|7|"]
    assert flags(cpu)["11L"] == "--num_layers 4 --model_dim 192 --bigram_dim 64 --xsa_last_n 2"  # the stand-in
    two = plan(tmp_path, "plan_scale", PRESET="cpu", SWEEP_SCALES="3L96", SEEDS="1", SWEEP_WEIGHTS="0.1 0.3")
    assert entries(two) == ["3L96_w0.1_s1|3L96|0.1|1|", "3L96_w0.3_s1|3L96|0.3|1|", "3L96_w0_s1|3L96|0|1|"]


def test_wgrid_plan_is_the_issue_grid(tmp_path):
    names = [e.split("|")[0] for e in entries(plan(tmp_path, "plan_wgrid", PRESET="h100"))]
    assert names == [f"11L_w{w}_s1337" for w in ("0", "0.1", "0.15", "0.2", "0.3", "0.5", "0.7", "1.0")]


@pytest.mark.parametrize("fn, env, message", [
    ("plan_noise", {"NOISES": "uniform gaussian"}, "error: NOISES: unknown noise 'gaussian'; choose uniform or absorbing"),
    ("plan_noise", {"NOISE_WEIGHTS": "0 0.3"}, "error: NOISE_WEIGHTS: 0 is the control, which the plan adds once"),
    ("plan_wgrid", {"GRID_SCALE": "2L32 3L48"}, "error: GRID_SCALE=2L32 3L48: one scale only"),
    ("plan_scale", {"SWEEP_SCALES": "2L32 big"},
     "error: SWEEP_SCALES: unknown scale 'big'; choose from 5L 11L or a size <L>L<d> such as 7L384"),
    ("plan_scale", {"SWEEP_WEIGHTS": "0.1 0"},
     "error: SWEEP_WEIGHTS: 0 is the control, which the sweep adds at every size and seed"),
    ("plan_scale", {"MATCH": "tokens"}, "error: MATCH=tokens: plan_scale matches cells by steps or wall-clock only; "
                                        "use MATCH=steps (BUDGET_SECS=0) or wallclock"),
    ("plan_noise", {"CDM_LOSS": "mse"}, "error: CDM_LOSS=mse: choose plain or elbo"),
])
def test_plans_refuse_bad_settings_in_one_line(tmp_path, fn, env, message):
    proc = plan(tmp_path, fn, PRESET="smoke", **env)
    assert proc.returncode == 1 and proc.stderr.strip() == message and "ENTRY" not in proc.stdout


# ----------------------------------------------------------------------------- best-weight


def grid_cell(root, name, weight, bpb, written=None):
    cell = root / name
    cell.mkdir(parents=True)
    (cell / "results.json").write_text(json.dumps({"final_val_bpb": bpb, "steps": 4, "tokens_seen": 1,
                                                   "train_seconds": 1.0, "config": {}, "cdm_weight": weight}))
    (cell / "cell.json").write_text(json.dumps({"recipe": ["--cdm_weight", written or str(weight)]}))
    return cell


def test_best_weight_is_the_lowest_final_val_bpb_among_shared_cells(tmp_path, capsys):
    cells = [grid_cell(tmp_path, "w0", 0, 2.40),  # the control is lowest, and is not a candidate
             grid_cell(tmp_path, "w0.1", 0.1, 2.52), grid_cell(tmp_path, "w1.0", 1.0, 2.47, written="1.0"),
             grid_cell(tmp_path, "w0.3", 0.3, 2.50)]
    assert cell_status.best_weight(cells) == "1.0"  # as the recipe wrote it, so cell names match the grid's


def test_best_weight_needs_every_cell_trained(tmp_path, capsys):
    done = grid_cell(tmp_path, "w0.3", 0.3, 2.5)
    (tmp_path / "w0.5").mkdir()
    with pytest.raises(cell_status.CellError) as refused:
        cell_status.best_weight([done, tmp_path / "w0.5"])
    assert str(refused.value) == (f"{tmp_path / 'w0.5'}: not trained yet (no results.json); "
                                  "the best weight needs the whole grid")


# ----------------------------------------------------------------------------- end to end (smoke)


def run_recipe(experiment: str, name: str, tmp_path: Path, data: Path, **env):
    return recipe(experiment, name, False, PRESET="smoke", DATA_DIR=str(data), CKPT_DIR=str(tmp_path / "cells"),
                  LOG_DIR=str(tmp_path / "logs"), OUT_DIR=str(tmp_path / "out"), **env)


def test_noise_recipe_end_to_end(shakespeare_data, tmp_path):
    proc = run_recipe("absorbing_noise", "run_noise", tmp_path, shakespeare_data, ELBO_SAMPLES="2", NOISE_WEIGHTS="1.0")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    cells = tmp_path / "cells"
    assert sorted(p.name for p in cells.iterdir()) == ["2L32_w0_s1337", "2L32_w1.0_s1337", "2L32_w1.0_s1337_abs"]
    absorbing = json.loads((cells / "2L32_w1.0_s1337_abs" / "results.json").read_text())
    assert absorbing["config"]["train"]["noise"] == "absorbing" and absorbing["config"]["model"]["mask_token"]
    ev = json.loads((cells / "2L32_w1.0_s1337_abs" / "eval_cf.json").read_text())
    assert ev["elbo"]["samples_per_window"] == 2 and ev["protocol"]["fill"] == "mask"
    assert json.loads((cells / "2L32_w1.0_s1337" / "eval_cf.json").read_text())["elbo"] is None
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {e["cell"] for e in summary["bidirectional"]} == {"2L32_w0_s1337", "2L32_w1.0_s1337", "2L32_w1.0_s1337_abs"}
    # A second run finds every cell trained and evaluated: nothing is redone.
    again = run_recipe("absorbing_noise", "run_noise", tmp_path, shakespeare_data, ELBO_SAMPLES="2", NOISE_WEIGHTS="1.0")
    assert again.returncode == 0 and "[start]" not in again.stdout and again.stdout.count("[skip ]") == 6


def test_wgrid_recipe_adds_seeds_of_the_best_weight(shakespeare_data, tmp_path):
    proc = run_recipe("share_ratio_and_scale", "run_wgrid", tmp_path, shakespeare_data, GRID_WEIGHTS="0 0.3 1.0", EXTRA_SEEDS="42",
                      DECODERS="ar,cf_valid")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    cells = tmp_path / "cells"
    bpb = {w: json.loads((cells / f"2L32_w{w}_s1337" / "results.json").read_text())["final_val_bpb"]
           for w in ("0.3", "1.0")}
    best = min(bpb, key=bpb.get)
    assert f"[plan ] best shared weight of the grid (lowest final_val_bpb): w={best}" in proc.stdout
    assert sorted(p.name for p in cells.iterdir()) == sorted(
        ["2L32_w0_s1337", "2L32_w0.3_s1337", "2L32_w1.0_s1337", f"2L32_w{best}_s42", "2L32_w0_s42"])
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(summary["rows"]) == 5 and all(r["ar"] is not None for r in summary["rows"])
