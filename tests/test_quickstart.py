"""scripts/quickstart.sh: the main job end to end (bash, as a user runs it), its evaluation with the
quickstart's decoders only, and its error lines naming the setting the user gives (RUN_DIR)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from recipe_run import recipe

REPO = Path(__file__).resolve().parents[1]
QUICK_DECODERS = {"ar", "cf_published", "cf_valid", "cf_valid_mix"}


def results(cell: Path) -> dict:
    return json.loads((cell / "results.json").read_text())


@pytest.mark.slow
def test_quickstart_end_to_end(shakespeare_data, tmp_path):
    """scripts/quickstart.sh with a 1-second budget on the prepared fixture (no install step)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PRESET", "CKPT_DIR", "LOG_DIR", "OUT_DIR", "DECODERS")}
    env.update(MEADOW_SKIP_INSTALL="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               DATA_DIR=str(shakespeare_data), RUN_DIR=str(tmp_path / "qs"), BUDGET_SECS="1", EVAL_N_SEQS="2",
               HEARTBEAT_SECS="0")
    proc = subprocess.run(["bash", str(REPO / "scripts" / "quickstart.sh")], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("5L_w0.3_s1337", "5L_w0_s1337"):
        ev = json.loads((tmp_path / "qs" / "cells" / name / "eval_cf.json").read_text())
        # Issue 18 item 7: the bidirectional-skeleton decoders (one forward per target) are not in
        # the main job; every decoder it scores is on the same windows.
        assert set(ev["decoders"]) == QUICK_DECODERS
    assert (tmp_path / "qs" / "results.md").read_text() in proc.stdout
    assert "| 3L-d128 w=0 (control) | 5L | 1337 |" in proc.stdout  # named by its size; the H100 name beside
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| run | stands in for |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    assert "Pure-AR BPB (lower is better)" in header
    table = [[c.strip() for c in line.strip("|").split("|")] for line in lines[start + 2:start + 4]]
    assert sorted(r[0] for r in table) == ["3L-d128 w=0 (control)", "3L-d128 w=0.3"]
    for row in table:
        cfg = results(tmp_path / "qs" / "cells" / ("5L_w0_s1337" if "control" in row[0] else "5L_w0.3_s1337"))
        model = cfg["config"]["model"]
        assert row[0].startswith(f"{model['num_layers']}L-d{model['model_dim']} ") and row[1] == "5L"
    assert "results.png: written" in proc.stdout
    assert (tmp_path / "qs" / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def quickstart_env(run_dir: Path, data: Path) -> dict:
    """What quickstart.sh exports before it runs the recipe."""
    return dict(PRESET="cpu", BACKEND="torch", STEPS="9999", BUDGET_SECS="90", EVAL_N_SEQS="32",
                DECODERS=",".join(sorted(QUICK_DECODERS)), DATA_DIR=str(data), CKPT_DIR=str(run_dir / "cells"),
                LOG_DIR=str(run_dir / "logs"), OUT_DIR=str(run_dir))


def test_quickstart_errors_name_run_dir(shakespeare_data, tmp_path):
    """Issue 18 item 8: the quickstart's user sets RUN_DIR, but its error hint said "choose another
    CKPT_DIR". A RUN_DIR holding a run these scripts did not make, and one that cannot be written,
    are each one error line naming RUN_DIR, before anything trains."""
    run_dir = tmp_path / "qs"
    foreign = run_dir / "cells" / "5L_w0.3_s1337"
    foreign.mkdir(parents=True)
    (foreign / "step_2.pt").write_bytes(b"not ours")
    res = recipe("matched_ablation", "quickstart", False, **quickstart_env(run_dir, shakespeare_data))
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith("error: ") and "choose another RUN_DIR" in res.stderr and "CKPT_DIR" not in res.stderr
    not_a_folder = tmp_path / "a_file"
    not_a_folder.write_text("")
    res = recipe("matched_ablation", "quickstart", False, **quickstart_env(not_a_folder / "qs", shakespeare_data))
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith(f"error: RUN_DIR={not_a_folder / 'qs'}") and "is not a folder" in res.stderr
    assert not_a_folder.read_text() == ""  # nothing written through it


def test_quickstart_unwritable_run_dir_is_one_line(shakespeare_data, tmp_path):
    """Issue 18 item 4 on the recipe side: an unwritable folder was a Python traceback."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write a read-only folder (root)")
        res = recipe("matched_ablation", "quickstart", False, **quickstart_env(locked / "qs", shakespeare_data))
    finally:
        locked.chmod(0o755)
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert re.match(r"error: RUN_DIR=.*: .* is not writable \(choose another RUN_DIR\)$", res.stderr.strip())
