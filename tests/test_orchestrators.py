"""The matched-ablation recipes (run_6, eval_6, run_seeds, eval_seeds and the quickstart, all in
experiments/2026-04-09_matched_ablation/plan.py) in PRESET=smoke on the shakespeare fixture, run in
this process as their bash entry points run them: the cells and JSON they produce, the per-cell
lines, skipping finished cells and resuming an interrupted one, MATCH=tokens, the preset table,
and one `error:` line for bad settings. The SIGKILL soak runs the bash entry point (a process
group to kill); the quickstart's end-to-end run is in test_quickstart.py."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from meadow_golf.model.checkpoint import load_npz
from kill_harness import run_with_kills
from recipe_run import dirs, recipe

REPO = Path(__file__).resolve().parents[1]
EXP = REPO / "experiments" / "2026-04-09_matched_ablation"
DECODERS = ("ar", "cf_published", "cf_valid", "cf_valid_mix", "cf_bidir_skeleton", "cf_bidir_skeleton_mix")
CELLS6 = ("5L_w0.3_s1337", "5L_w1.0_s1337", "5L_w0_s1337", "11L_w0.3_s1337", "11L_w1.0_s1337", "11L_w0_s1337")


def orchestrate(script: str, check: bool = True, **settings):
    """The recipe behind experiments/2026-04-09_matched_ablation/<script> (run_6.sh -> run_6)."""
    return recipe("matched_ablation", script.removesuffix(".sh"), check, **{"PRESET": "smoke", **settings})


def results(cell: Path) -> dict:
    return json.loads((cell / "results.json").read_text())


def mtimes(cells: Path) -> dict:
    return {str(p.relative_to(cells)): p.stat().st_mtime_ns for p in cells.rglob("*") if p.is_file()}


def lines_for(stdout: str, prefix: str, cell: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(prefix) and f" {cell} " in line]


@pytest.fixture(scope="module")
def ablation6(shakespeare_data, tmp_path_factory):
    """run_6.sh + eval_6.sh in PRESET=smoke: (root, settings, run stdout, eval stdout)."""
    root = tmp_path_factory.mktemp("ablation6")
    settings = dirs(root, shakespeare_data)
    run = orchestrate("run_6.sh", **settings)
    ev = orchestrate("eval_6.sh", **settings)
    return root, settings, run.stdout, ev.stdout


def test_run6_and_eval6_produce_every_cell(ablation6):
    root, _, run_out, eval_out = ablation6
    cells = root / "cells"
    assert sorted(p.name for p in cells.iterdir()) == sorted(CELLS6)
    for name in CELLS6:
        res = results(cells / name)
        weight = float(name.split("_w")[1].split("_")[0])
        assert (res["steps"], res["tokens_seen"], res["cdm_weight"]) == (4, 4 * 256, weight)
        assert res["config"]["train"]["num_layers"] == (2 if name.startswith("5L") else 3)
        ev = json.loads((cells / name / "eval_cf.json").read_text())
        # The recipe evaluates random windows: no consistency check is made, and the JSON says so.
        assert set(ev["decoders"]) == set(DECODERS) and ev["consistency"]["run"] is False
        assert ev["consistency"]["passed"] is None
        assert (ev["protocol"]["n_seqs"], ev["protocol"]["seq_len"]) == (8, 32)
        # One summary line per cell, with the numbers of its JSON.
        (train_line,) = lines_for(run_out, "[done ]", name)
        assert f"steps:4 tokens:1,024 " in train_line and f"final_val_bpb:{res['final_val_bpb']:.4f}" in train_line
        (eval_line,) = lines_for(eval_out, "[done ]", name)
        bpb = {d: ev["decoders"][d]["bpb"] for d in DECODERS}
        assert (f"ar:{bpb['ar']:.4f} cf_published:{bpb['cf_published']:.4f} (NOT a valid code length) "
                f"cf_valid:{bpb['cf_valid']:.4f}") in eval_line
        assert eval_line.endswith("consistency:not_run")
    summary = json.loads((root / "out" / "results.json").read_text())
    assert sorted(r["cell"] for r in summary["rows"]) == sorted(CELLS6)
    assert all(r["ar"] is not None for r in summary["rows"])
    md = (root / "out" / "results.md").read_text()
    assert "CF BPB (published; NOT a valid code length)" in md and "| 3L-d48 w=0 (control, step-matched) | 11L | 1337 |" in md
    assert "train_cdm.py --seq_len 32 --batch_tokens 256" in run_out  # the preset table comes first


def test_rerun_skips_finished_cells_and_resumes_an_interrupted_one(ablation6, tmp_path):
    root, settings, _, _ = ablation6
    cells = tmp_path / "cells"
    shutil.copytree(root / "cells", cells)
    victim = cells / "5L_w0.3_s1337"
    before = results(victim)
    _, weights_before = load_npz(victim / "final_model.npz")
    eval_before = json.loads((victim / "eval_cf.json").read_text())["decoders"]
    (victim / "results.json").unlink()  # interrupted after its step_2 checkpoint
    assert (victim / "step_2.pt").is_file()
    others = {k: v for k, v in mtimes(cells).items() if not k.startswith(victim.name)}
    run = orchestrate("run_6.sh", **dirs(tmp_path, Path(settings["DATA_DIR"]), cells))
    ev = orchestrate("eval_6.sh", **dirs(tmp_path, Path(settings["DATA_DIR"]), cells))
    after = mtimes(cells)
    assert {k: after[k] for k in others} == others  # finished cells untouched
    assert not [k for k in after if k not in others and not k.startswith(victim.name)]
    for name in CELLS6[1:]:
        assert len(lines_for(run.stdout, "[skip ]", name)) == 1
        assert len(lines_for(ev.stdout, "[skip ]", name)) == 1
    assert f"[start] {victim.name}: resuming from its newest step checkpoint" in run.stdout
    assert "resumed_from:" in (victim / "train.log").read_text()
    redone = results(victim)
    assert (redone["steps"], redone["tokens_seen"]) == (before["steps"], before["tokens_seen"])
    # Resume is exact, as the README claims: bit for bit the uninterrupted run's weights and numbers.
    assert redone["final_val_bpb"] == before["final_val_bpb"]
    _, weights_after = load_npz(victim / "final_model.npz")
    assert set(weights_after) == set(weights_before)
    assert all(np.array_equal(weights_after[k], weights_before[k]) for k in weights_before)
    assert len(lines_for(ev.stdout, "[done ]", victim.name)) == 1  # its evaluation is redone
    assert (victim / "eval_cf.json").stat().st_mtime_ns >= (victim / "results.json").stat().st_mtime_ns
    eval_after = json.loads((victim / "eval_cf.json").read_text())["decoders"]
    assert {d: eval_after[d]["bpb"] for d in DECODERS} == {d: eval_before[d]["bpb"] for d in DECODERS}


def test_random_kills_during_the_sweep_change_no_result(ablation6, tmp_path):
    """Soak: run_6.sh then eval_6.sh, each SIGKILLed (the whole process group, as a preempted pod)
    at random moments and rerun until it finishes; every cell ends with the uninterrupted run's
    results.json values, weights and eval_cf.json numbers."""
    root, settings, _, _ = ablation6
    rng = random.Random(11)
    # The bash entry point itself (a process group that a preempted pod loses at once).
    env = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    env.update({"PRESET": "smoke", "PYTHON": sys.executable, "HEARTBEAT_SECS": "0",
                **dirs(tmp_path, Path(settings["DATA_DIR"]))})
    kills = 0
    for script, n in (("run_6.sh", 6), ("eval_6.sh", 3)):
        report = run_with_kills(["bash", str(EXP / script)], env, kills=n, rng=rng, delay=(0.5, 4.0), timeout=600)
        assert report.returncode == 0, report.outputs[-1][-3000:]
        kills += report.kills
    print(f"soak: kills_survived:{kills}")
    assert kills >= 4
    for name in CELLS6:
        new, ref = tmp_path / "cells" / name, root / "cells" / name
        a, b = results(new), results(ref)
        assert (a["steps"], a["tokens_seen"], a["final_val_bpb"]) == (b["steps"], b["tokens_seen"], b["final_val_bpb"])
        _, wa = load_npz(new / "final_model.npz")
        _, wb = load_npz(ref / "final_model.npz")
        assert all(np.array_equal(wa[k], wb[k]) for k in wb)
        ea, eb = (json.loads((c / "eval_cf.json").read_text())["decoders"] for c in (new, ref))
        assert {d: ea[d]["bpb"] for d in DECODERS} == {d: eb[d]["bpb"] for d in DECODERS}


def test_changed_recipe_is_refused(ablation6, tmp_path):
    root, settings, _, _ = ablation6
    proc = orchestrate("run_6.sh", check=False, STEPS="5", **dirs(tmp_path, Path(settings["DATA_DIR"]), root / "cells"))
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--steps 4 -> 5" in err[0]


def test_seeds_reuse_run6_cells_and_report_group_statistics(ablation6, tmp_path):
    root, settings, _, _ = ablation6
    cells = tmp_path / "cells"
    shutil.copytree(root / "cells", cells)
    seeds = dict(SEEDS="1337 42 7", CONTROL_SEEDS="1337 42", **dirs(tmp_path, Path(settings["DATA_DIR"]), cells))
    run = orchestrate("run_seeds.sh", **seeds)
    orchestrate("eval_seeds.sh", **seeds)
    assert len(lines_for(run.stdout, "[skip ]", "11L_w0.3_s1337")) == 1  # trained by run_6 already
    assert len(lines_for(run.stdout, "[skip ]", "11L_w0_s1337")) == 1
    for name in ("11L_w0.3_s42", "11L_w0.3_s7", "11L_w0_s42"):
        assert len(lines_for(run.stdout, "[done ]", name)) == 1
        assert results(cells / name)["config"]["train"]["seed"] == int(name.rsplit("_s", 1)[1])
        assert (cells / name / "eval_cf.json").is_file()
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    groups = {g["label"]: g for g in summary["groups"]}
    assert groups["3L-d48 w=0.3"]["seeds"] == [1337, 42, 7]
    assert groups["3L-d48 w=0 (control, step-matched)"]["seeds"] == [1337, 42]
    ar = [json.loads((cells / f"11L_w0_s{s}" / "eval_cf.json").read_text())["decoders"]["ar"]["bpb"] for s in (1337, 42)]
    cf_valid = [json.loads((cells / f"11L_w0.3_s{s}" / "eval_cf.json").read_text())["decoders"]["cf_valid"]["bpb"]
                for s in (1337, 42, 7)]
    test = next(t for t in summary["tests"] if t["metric"] == "cf_valid")
    assert test["control_mean"] == pytest.approx(sum(ar) / 2, abs=1e-12)
    # Seeds 1337 and 42 are on both sides: a paired t over them, recomputed here by hand.
    d = [cf_valid[0] - ar[0], cf_valid[1] - ar[1]]
    sd_d = abs(d[0] - d[1]) / 2 ** 0.5
    assert test["seed_test"]["seeds"] == [1337, 42] and test["seed_test"]["result"]["df"] == 1
    assert test["seed_test"]["result"]["t"] == pytest.approx((sum(d) / 2) / (sd_d / 2 ** 0.5), rel=1e-9)
    assert "## Comparisons with the control over seeds" in (tmp_path / "out" / "results.md").read_text()


def test_match_tokens_gives_the_control_the_shared_runs_tokens(shakespeare_data, tmp_path):
    # A wall-clock budget for the shared run (its step count is whatever 2 s allow), then the control.
    proc = orchestrate("run_6.sh", MATCH="tokens", SCALES="5L", WEIGHTS="0.3 0", BUDGET_SECS="2", STEPS="9999",
                       **dirs(tmp_path, shakespeare_data))
    shared, control = results(tmp_path / "cells" / "5L_w0.3_s1337"), results(tmp_path / "cells" / "5L_w0_s1337_tok")
    assert shared["config"]["train"]["train_budget_secs"] == 2.0
    assert control["tokens_seen"] == shared["tokens_seen"]
    assert control["config"]["train"]["steps"] == shared["tokens_seen"] // 256 == control["steps"]
    assert control["config"]["train"]["train_budget_secs"] == 0
    meta = json.loads((tmp_path / "cells" / "5L_w0_s1337_tok" / "cell.json").read_text())
    assert (meta["match"], meta["matched_to"]) == ("tokens", "5L_w0.3_s1337")
    assert f"token-matched to 5L_w0.3_s1337 ({control['steps']} steps)" in proc.stdout


def test_presets_print_their_table_and_default_plans(shakespeare_data, tmp_path):
    """PRESET=h100 is the original recipe; the seed plan defaults to METHOD.md §7's seeds plus 3 control seeds.
    (Evaluating an empty CKPT_DIR prints the table, then stops with one error line.)"""
    proc = orchestrate("eval_6.sh", check=False, PRESET="h100", **dirs(tmp_path, shakespeare_data))
    assert proc.returncode != 0 and proc.stderr.startswith("error: ") and "not trained yet" in proc.stderr
    for text in ("--num_layers 5 --model_dim 256 --bigram_dim 128 --xsa_last_n 2",
                 "--num_layers 11 --model_dim 512 --bigram_dim 128 --xsa_last_n 4",
                 "--seq_len 1024 --batch_tokens 65536", "budget per cell: 540 s", "--n_seqs 500 --seq_len 1024",
                 "cells  5L_w0.3_s1337 5L_w1.0_s1337 5L_w0_s1337 11L_w0.3_s1337 11L_w1.0_s1337 11L_w0_s1337",
                 "COMPILE=1"):  # the original compiled; here both passes, before the clock starts
        assert text in proc.stdout
    proc = orchestrate("eval_seeds.sh", check=False, **dirs(tmp_path, shakespeare_data))
    assert "COMPILE=0" in proc.stdout  # smoke (and cpu, mac): eager
    assert ("cells  11L_w0.3_s1337 11L_w0.3_s42 11L_w0.3_s2024 11L_w0.3_s7 11L_w0.3_s100 "
            "11L_w0_s1337 11L_w0_s42 11L_w0_s2024") in proc.stdout


@pytest.mark.parametrize("script", ["run_6.sh", "eval_6.sh", "run_seeds.sh", "eval_seeds.sh"])
@pytest.mark.parametrize("settings, message", [
    ({"PRESET": "a100"}, "PRESET=a100: unknown preset"),
    ({"BACKEND": "jax"}, "BACKEND=jax: unknown backend"),
    ({"MATCH": "flops"}, "MATCH=flops: unknown matching"),
    ({"NPROC": "2", "BACKEND": "mlx"}, "NPROC=2: multi-process training (torchrun/DDP) is torch only"),
])
def test_bad_settings_are_one_error_line(shakespeare_data, tmp_path, script, settings, message):
    proc = orchestrate(script, check=False, **{**dirs(tmp_path, shakespeare_data), **settings})
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith(f"error: {message}")
    assert proc.stdout == ""  # nothing ran
    assert not (tmp_path / "cells").exists()


@pytest.mark.parametrize("settings, message", [
    ({"NPROC": "two"}, "NPROC=two: expected a positive integer"),
    ({"SCALES": "7L"}, "SCALES: unknown scale '7L'"),
    ({"WEIGHTS": "0 x"}, "WEIGHTS=x: expected a non-negative number"),
    ({"BUDGET_SECS": "0", "STEPS": "0"}, "STEPS=0: the original's rules need a nominal step count"),
    ({"DEVICE": "tpu"}, "DEVICE=tpu"),
    ({"MATCH": "tokens", "WEIGHTS": "0 1.0"}, "MATCH=tokens: the controls match the w=0.3 cells"),
    ({"DATA_DIR": "no/such/folder"}, "DATA_DIR="),
])
def test_bad_values_are_one_error_line(shakespeare_data, tmp_path, settings, message):
    proc = orchestrate("run_6.sh", check=False, **{**dirs(tmp_path, shakespeare_data), **settings})
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: ")
    assert message in proc.stderr


def test_sigterm_to_a_cell_stops_the_recipe_and_a_rerun_resumes(shakespeare_data, tmp_path):
    """A pod's SIGTERM reaching the recipe while a cell trains (in this process, so the trainer's
    own handler takes it): the trainer checkpoints and returns, the recipe stops with a [stop ]
    line and exit 143 (not "done"), and the same command then finishes the cell."""
    settings = dict(SCALES="5L", WEIGHTS="0.3", STEPS="300", **dirs(tmp_path, shakespeare_data))
    cell = tmp_path / "cells" / "5L_w0.3_s1337"
    sent = threading.Event()

    def send_when_training():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not sent.is_set():
            log = cell / "train_log.jsonl"
            if log.is_file() and log.read_text().count('"event": "train"') >= 3:
                os.kill(os.getpid(), signal.SIGTERM)
                sent.set()
            time.sleep(0.01)

    # A SIGTERM that arrives after the trainer restored the handlers must not end the test run.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    watcher = threading.Thread(target=send_when_training, daemon=True)
    watcher.start()
    try:
        proc = orchestrate("run_6.sh", check=False, **settings)
    finally:
        sent.set()
        watcher.join()
        signal.signal(signal.SIGTERM, previous)
    if proc.returncode == 0:
        pytest.skip("the cell finished before the signal arrived")
    assert proc.returncode == 143, proc.stdout + proc.stderr
    assert "[stop ] 5L_w0.3_s1337: stopped by a signal" in proc.stderr
    assert not (cell / "results.json").exists() and list(cell.glob("step_*.pt"))
    again = orchestrate("run_6.sh", **settings)
    assert "resuming from its newest step checkpoint" in again.stdout
    assert results(cell)["steps"] == 300


def test_nproc_2_trains_with_two_gloo_processes(shakespeare_data, tmp_path):
    """NPROC=2 runs the cell under torchrun (gloo on CPU): the same global batch, rank 0 writes."""
    settings = dict(SCALES="5L", WEIGHTS="0.3", NPROC="2", FUSE_PASSES="1", **dirs(tmp_path, shakespeare_data))
    proc = orchestrate("run_6.sh", **settings)
    assert "NPROC=2" in proc.stdout and "FUSE_PASSES=1" in proc.stdout
    res = results(tmp_path / "cells" / "5L_w0.3_s1337")
    assert res["world_size"] == 2 and res["rank_weight_spread"] == 0.0 and res["steps"] == 4
    assert res["config"]["train"]["fuse_passes"] is True


@pytest.mark.mlx
def test_mlx_backend_runs_and_evaluates(shakespeare_data, tmp_path):
    pytest.importorskip("mlx.core")
    settings = dict(BACKEND="mlx", SCALES="5L", WEIGHTS="0.3 0", **dirs(tmp_path, shakespeare_data))
    orchestrate("run_6.sh", **settings)
    orchestrate("eval_6.sh", **settings)
    for name in ("5L_w0.3_s1337", "5L_w0_s1337"):
        cell = tmp_path / "cells" / name
        assert results(cell)["steps"] == 4 and list(cell.glob("step_*.safetensors"))
        assert json.loads((cell / "eval_cf.json").read_text())["consistency"]["run"] is False


PLAN_LINE = re.compile(r"^\[plan \] (train|eval) cell (\d+)/(\d+) (\S+); elapsed (\d+) s; (.*)$")
BEAT_LINE = re.compile(r"^\[beat \] (\S+): (\d+) s in; log: (.*)$")


def test_recipe_shows_cell_k_of_n_an_eta_and_a_heartbeat(shakespeare_data, tmp_path):
    """Issue 13 item 10: `[plan ]` lines count the cells with the elapsed time and an ETA; while a
    cell runs, a `[beat ]` line every HEARTBEAT_SECS quotes a real line of its log."""
    settings = dict(SCALES="5L", WEIGHTS="0.3 0", STEPS="120", HEARTBEAT_SECS="1", **dirs(tmp_path, shakespeare_data))
    out = orchestrate("run_6.sh", **settings).stdout
    plans = [m for m in map(PLAN_LINE.match, out.splitlines()) if m]
    assert [(m.group(1), m.group(2), m.group(3), m.group(4)) for m in plans] == [
        ("train", "1", "2", "5L_w0.3_s1337"), ("train", "2", "2", "5L_w0_s1337")]
    assert plans[0].group(6) == "eta unknown until a cell has run"  # smoke: a step cap, no budget
    # after one cell ran, the ETA is the cells left (1) times the time that cell took (the elapsed time)
    elapsed = int(plans[1].group(5))
    assert plans[1].group(6) == f"eta {elapsed} s (1 cells left at the mean of the 1 run so far)"
    beats = [m for m in map(BEAT_LINE.match, out.splitlines()) if m]
    assert beats, out
    for name in {m.group(1) for m in beats}:
        log_lines = (tmp_path / "logs" / f"{name}.train.log").read_text().splitlines()
        seconds = [int(m.group(2)) for m in beats if m.group(1) == name]
        assert seconds == sorted(set(seconds)) and seconds[0] >= 1
        for m in beats:
            if m.group(1) == name:
                assert any(line[:160] == m.group(3) for line in log_lines), m.group(3)
    # the evaluation loop counts its cells too
    ev = orchestrate("eval_6.sh", **settings).stdout
    assert [(m.group(1), m.group(2)) for m in map(PLAN_LINE.match, ev.splitlines()) if m] == [("eval", "1"), ("eval", "2")]


def test_heartbeat_before_the_first_output_line_does_not_repeat_the_command(tmp_path, monkeypatch, capsys):
    """Issue 18 item 8: until an evaluation printed its first progress line, every `[beat ]` quoted
    the log's last line, the command line the recipe had written at its top, for minutes. Now a
    beat before the first output line says there is none yet; after it, the beat quotes it."""
    import io
    import types

    from meadow_golf.recipes.running import Runner

    def slow_main(argv):
        time.sleep(2.6)
        print("progress:batches 1/4 windows:8/32")
        time.sleep(1.6)
        return 0

    monkeypatch.setitem(sys.modules, "slow_cell_for_test", types.SimpleNamespace(main=slow_main))
    out = io.StringIO()
    log = tmp_path / "logs" / "c.eval.log"
    rc = Runner(out, heartbeat_secs=1).in_process(log, "c", ["python", "eval_cf.py", "--n_seqs", "32"],
                                                  "slow_cell_for_test", ["--n_seqs", "32"])
    beats = [line for line in out.getvalue().splitlines() if line.startswith("[beat ]")]
    assert rc == 0 and len(beats) >= 3, out.getvalue()
    assert all("eval_cf.py --n_seqs 32" not in b for b in beats)  # never the command line
    assert beats[0].startswith("[beat ] c: 1 s in; no output yet")
    assert beats[-1] == f"[beat ] c: {beats[-1].split(': ')[1].split(' s in')[0]} s in; log: progress:batches 1/4 windows:8/32"
    assert log.read_text().splitlines()[0].endswith("python eval_cf.py --n_seqs 32")  # the command stays in the log


def test_a_failing_cell_keeps_its_exit_status(shakespeare_data, tmp_path, monkeypatch):
    """A trainer that exits 7: the recipe stops with 7, naming the cell and quoting its log."""
    from meadow_golf.train import train_cdm

    def boom(argv):
        print("boom")
        return 7

    monkeypatch.setattr(train_cdm, "main", boom)
    proc = orchestrate("run_6.sh", check=False, SCALES="5L", WEIGHTS="0.3", **dirs(tmp_path, shakespeare_data))
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert "error: training 5L_w0.3_s1337 failed (exit status 7)" in proc.stderr and "boom" in proc.stderr


def test_smoke_cells_start_no_process(shakespeare_data, tmp_path, monkeypatch):
    """Issue 18 item 8: PRESET=smoke took 185 s, about 20 s of process start-up per cell (five
    Python processes each). Cells now train and evaluate in the recipe's own process: a plan of
    two cells, trained and evaluated, starts no process at all."""
    import subprocess

    real = subprocess.Popen
    pythons = []

    class NoPython(real):  # git (the run's commit) may run; a Python interpreter may not
        def __init__(self, args, *rest, **kwargs):
            cmd = [str(a) for a in (args if isinstance(args, (list, tuple)) else [args])]
            if any("python" in Path(c).name or c == sys.executable for c in cmd[:1]):
                pythons.append(cmd)
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", NoPython)
    settings = dict(SCALES="5L", WEIGHTS="0.3 0", **dirs(tmp_path, shakespeare_data))
    started = time.monotonic()
    orchestrate("run_6.sh", **settings)
    orchestrate("eval_6.sh", **settings)
    print(f"smoke two cells trained+evaluated in process: {time.monotonic() - started:.1f} s")
    assert pythons == []
    for name in ("5L_w0.3_s1337", "5L_w0_s1337"):
        assert (tmp_path / "cells" / name / "eval_cf.json").is_file()
