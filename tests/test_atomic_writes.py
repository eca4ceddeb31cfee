"""Every file the project writes is replaced atomically (temporary file in the same folder, fsync,
rename): when the disk fills up during a write, the previous file stays intact byte for byte and
no partial or temporary file is left in the folder.

A disk-full failure is simulated in two places: `fsync` fails (the data never reached the disk),
or the write itself fails halfway through the payload. The second works through os.fdopen, which
both atomic helpers (challenge_format.atomic_write_bytes, cells.write_json_atomic) use on
their temporary file. A writer that bypassed them would not fail at all, and its test would say so.
"""

from __future__ import annotations

import ast
import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from meadow_golf.recipes import cells as cell_status
from meadow_golf.eval import eval_cf
from meadow_golf.eval import generate as gen_test
from meadow_golf.eval import leakage as leakage_test
from meadow_golf.data import prepare_data
from meadow_golf.report import summarize
from meadow_golf.data.challenge_format import write_shard
from meadow_golf.model.checkpoint import save_int6_artifact, save_npz, save_torch_checkpoint
from meadow_golf.data.prepared_folder import write_meta

REPO = Path(__file__).resolve().parents[1]
FAILURES = ("fsync", "write")


def disk_full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class HalfWrite:
    """A file object that writes half of the first payload, then fails as a full disk does."""

    def __init__(self, inner):
        self.inner = inner

    def write(self, data):
        self.inner.write(data[: len(data) // 2])
        self.inner.flush()
        raise disk_full()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.inner.close()


@pytest.fixture
def fail_writes(monkeypatch):
    """fail_writes(how): from now on every fsync fails ("fsync") or every os.fdopen file fails
    halfway through its write ("write")."""

    def arm(how: str) -> None:
        if how == "fsync":
            def failing_fsync(fd):
                raise disk_full()

            monkeypatch.setattr(os, "fsync", failing_fsync)
        else:
            real_fdopen = os.fdopen
            monkeypatch.setattr(os, "fdopen", lambda *a, **k: HalfWrite(real_fdopen(*a, **k)))

    return arm


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder (hidden ones included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_disk_full_leaves_previous(folder: Path, before: dict[str, bytes], write) -> None:
    with pytest.raises(OSError) as raised:
        write()
    assert raised.value.errno == errno.ENOSPC
    assert snapshot(folder) == before  # same files, same bytes: nothing partial, no temporary file


def small_weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(size=(6, 4)).astype(np.float32), "g": rng.normal(size=(4,)).astype(np.float32)}


# ----------------------------------------------------------------------------- one writer kind each


@pytest.mark.parametrize("how", FAILURES)
def test_shard(tmp_path, fail_writes, how):
    path = tmp_path / "fineweb_val_000000.bin"
    write_shard(path, np.arange(100))
    before = snapshot(tmp_path)
    fail_writes(how)
    assert_disk_full_leaves_previous(tmp_path, before, lambda: write_shard(path, np.arange(5000)))


@pytest.mark.parametrize("how", FAILURES)
def test_meta_json(tmp_path, fail_writes, how):
    write_meta(tmp_path, {"corpus": "old"})
    before = snapshot(tmp_path)
    fail_writes(how)
    assert_disk_full_leaves_previous(tmp_path, before, lambda: write_meta(tmp_path, {"corpus": "new" * 1000}))


@pytest.mark.parametrize("how", FAILURES)
def test_portable_npz(tmp_path, fail_writes, how):
    path = tmp_path / "final_model.npz"
    save_npz(path, small_weights(0), {"v": 1})
    before = snapshot(tmp_path)
    fail_writes(how)
    assert_disk_full_leaves_previous(tmp_path, before, lambda: save_npz(path, small_weights(1), {"v": 2}))


@pytest.mark.parametrize("how", FAILURES)
def test_step_checkpoint(tmp_path, fail_writes, how):
    import torch

    path = tmp_path / "step_final.pt"
    payload = {"model": {"w": torch.zeros(3)}, "config": {"v": 1}, "step": 1}
    save_torch_checkpoint(path, payload)
    before = snapshot(tmp_path)
    fail_writes(how)
    bigger = {"model": {"w": torch.ones(300)}, "config": {"v": 1}, "step": 2}
    assert_disk_full_leaves_previous(tmp_path, before, lambda: save_torch_checkpoint(path, bigger))


@pytest.mark.parametrize("how", FAILURES)
def test_int6_artifact(tmp_path, fail_writes, how):
    path = tmp_path / "final_model.int6.lzma"
    save_int6_artifact(path, small_weights(0), {"v": 1})
    before = snapshot(tmp_path)
    fail_writes(how)
    assert_disk_full_leaves_previous(tmp_path, before, lambda: save_int6_artifact(path, small_weights(1), {"v": 2}))


@pytest.mark.parametrize("how", FAILURES)
def test_eval_json(tmp_path, fail_writes, how):
    # eval_cf, leakage_test and gen_test all write --json_out through eval_cf.write_json.
    assert leakage_test.write_json is eval_cf.write_json and gen_test.write_json is eval_cf.write_json
    path = tmp_path / "final_model.eval_cf.json"
    eval_cf.write_json(path, {"bpb": 1.0})
    before = snapshot(tmp_path)
    fail_writes(how)
    assert_disk_full_leaves_previous(tmp_path, before, lambda: eval_cf.write_json(path, {"bpb": list(range(999))}))


@pytest.mark.parametrize("how", FAILURES)
def test_mlx_step_checkpoint(tmp_path, fail_writes, how):
    mx = pytest.importorskip("mlx.core")
    from meadow_golf.eval import mlx_backend

    path = tmp_path / "step_2.safetensors"

    def save(n):
        mlx_backend.save_step_checkpoint(path, model_weights={"w": mx.zeros((n,))}, optimizer_state={},
                                         state={"config": {"v": 1}, "step": n})

    save(3)
    before = snapshot(tmp_path)
    fail_writes(how)
    assert_disk_full_leaves_previous(tmp_path, before, lambda: save(300))


@pytest.mark.parametrize("how", FAILURES)
def test_cell_json(tmp_path, fail_writes, how):
    path = tmp_path / "cell.json"
    cell_status.write_json_atomic(path, {"name": "old"})
    before = snapshot(tmp_path)
    fail_writes(how)
    assert_disk_full_leaves_previous(tmp_path, before,
                                     lambda: cell_status.write_json_atomic(path, {"name": "new" * 1000}))


@pytest.mark.parametrize("how", FAILURES)
def test_summarize_outputs(tmp_path, fail_writes, how, capsys):
    cell = tmp_path / "cell"
    cell.mkdir()
    (cell / "results.json").write_text(json.dumps({
        "final_val_bpb": 1.5, "steps": 10, "tokens_seen": 1000, "cdm_weight": 0.0,
        "config": {"model": {"num_layers": 2}, "train": {"seed": 1}}}))
    out = tmp_path / "summary"
    argv = ["--out_dir", str(out), "--json_out", str(tmp_path / "summary.json"), str(cell / "results.json")]
    assert summarize.main([*argv, "--title", "old"]) == 0
    before = snapshot(tmp_path)
    capsys.readouterr()
    fail_writes(how)
    assert summarize.main([*argv, "--title", "new"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "summary.json" in err[0], err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("how", FAILURES)
def test_prepared_folder(tmp_path, fail_writes, how, capsys):
    """prepare_data builds in a hidden staging folder: a failed write leaves no folder at all."""
    before = snapshot(tmp_path)
    fail_writes(how)
    rc = prepare_data.main(["synthetic", "--out", str(tmp_path / "data"), "--train-docs", "300", "--val-docs", "30"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("error: ") and "No space left" in err[0], err
    assert snapshot(tmp_path) == before and list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- no writer bypasses them

# Functions allowed to write a file directly, and why.
DIRECT_WRITERS_ALLOWED = {
    ("scripts/meadow_golf/data/corpus_fineweb.py", "place_file"): "fsyncs a copy inside the staging folder",
    ("scripts/meadow_golf/common/run_log.py", "__init__"): "append-only training logs",
    ("scripts/meadow_golf/recipes/running.py", "in_process"): "append-only cell logs (a cell's stdout+stderr)",
    ("scripts/meadow_golf/recipes/running.py", "in_child"): "append-only cell logs (a cell's stdout+stderr)",
    ("scripts/meadow_golf/retrofit/recipe.py", "run"): "append-only stage logs (a stage's stdout+stderr)",
    ("scripts/meadow_golf/retrofit/train.py", "save_adapter"): "writes into a staging folder renamed into place",
}
# Serializers that take a target (call -> index of the target argument): the target must be an
# in-memory buffer named `buf`, whose bytes then go to an atomic helper.
SERIALIZERS = {"np.save": 0, "np.savez": 0, "np.savez_compressed": 0, "torch.save": 1, "mx.save": 0,
               "mx.savez": 0, "mx.save_safetensors": 0, "fig.savefig": 0, "plt.savefig": 0}
FILE_COPIES = ("shutil.copyfile", "shutil.copy", "shutil.copy2", "shutil.copytree")


class DirectWrites(ast.NodeVisitor):
    """Collects (enclosing function, call) for each call that may write a file non-atomically."""

    def __init__(self):
        self.function, self.found = "<module>", []

    def visit_FunctionDef(self, node):
        outer, self.function = self.function, node.name
        self.generic_visit(node)
        self.function = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Call(self, call):
        if self.writes(call):
            self.found.append((self.function, ast.unparse(call)))
        self.generic_visit(call)

    @staticmethod
    def writes(call: ast.Call) -> bool:
        callee = ast.unparse(call.func)
        if callee.endswith((".write_text", ".write_bytes", ".tofile")) or callee in FILE_COPIES:
            return True
        if callee == "open":
            mode = call.args[1] if len(call.args) > 1 else next(
                (k.value for k in call.keywords if k.arg == "mode"), ast.Constant("r"))
            return not (isinstance(mode, ast.Constant) and set(str(mode.value)) <= set("rbt"))
        if callee in SERIALIZERS:
            index = SERIALIZERS[callee]
            target = call.args[index] if len(call.args) > index else None
            return not (isinstance(target, ast.Name) and target.id == "buf")
        return False


def direct_writes(path: Path) -> list[str]:
    visitor = DirectWrites()
    visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
    rel = path.relative_to(REPO).as_posix()
    return [f"{rel}: {fn}: {text}" for fn, text in visitor.found if (rel, fn) not in DIRECT_WRITERS_ALLOWED]


def test_no_module_writes_a_file_around_the_atomic_helpers():
    # The package (scripts/meadow_golf/), the entry scripts beside it and every experiment's own files.
    sources = sorted((REPO / "scripts").rglob("*.py")) + sorted((REPO / "experiments").glob("*/*.py"))
    assert REPO / "scripts" / "meadow_golf" / "model" / "checkpoint.py" in sources
    offenders = [line for path in sources for line in direct_writes(path)]
    assert offenders == [], "write through challenge_format.atomic_write_bytes instead:\n" + "\n".join(offenders)
