"""The evaluators check that they can write their results BEFORE any scoring (issue 18, new-user
item 4: eval_cf.py with --json_out in a folder it could not write scored for minutes, then failed).

An output whose folder cannot be made (a file stands where the folder should be) is refused with
one `error:` line naming the flag, exit 1, and nothing of the model is loaded or scored: the
scoring entry points are replaced by recorders that must stay untouched.
"""

from __future__ import annotations

import pytest

from meadow_golf.eval import eval_cf, generate, leakage


def blocked_path(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    return blocker, blocker / "out" / "result.json"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


def test_eval_cf_refuses_an_unwritable_json_out_before_scoring(shakespeare_data, tiny_run, tmp_path, capsys,
                                                               monkeypatch):
    run, _ = tiny_run
    calls = []
    monkeypatch.setattr(eval_cf, "evaluate", lambda *a, **k: calls.append("evaluate"))
    blocker, json_out = blocked_path(tmp_path)
    rc = eval_cf.main(["--checkpoint", str(run / "final_model.npz"), "--data_dir", str(shakespeare_data),
                       "--seq_len", "32", "--n_seqs", "2", "--json_out", str(json_out)])
    line = one_error_line(capsys)
    assert rc == eval_cf.EXIT_BAD_INPUT and calls == []
    assert str(blocker) in line and "--json_out" in line
    assert blocker.read_text() == "x"


def test_eval_cf_checks_the_per_window_file_too(shakespeare_data, tiny_run, tmp_path, capsys, monkeypatch):
    """The per-window .npz goes next to the JSON under its own name: a folder in its place is refused."""
    run, _ = tiny_run
    calls = []
    monkeypatch.setattr(eval_cf, "evaluate", lambda *a, **k: calls.append("evaluate"))
    json_out = tmp_path / "r.json"
    eval_cf.per_window_path(json_out).mkdir()
    rc = eval_cf.main(["--checkpoint", str(run / "final_model.npz"), "--data_dir", str(shakespeare_data),
                       "--seq_len", "32", "--n_seqs", "2", "--json_out", str(json_out)])
    line = one_error_line(capsys)
    assert rc == eval_cf.EXIT_BAD_INPUT and calls == [] and "r.windows.npz is a folder" in line


@pytest.mark.parametrize("tool", [leakage, generate], ids=["leakage", "generate"])
def test_leakage_and_generate_refuse_an_unwritable_json_out_before_loading(tool, shakespeare_data, tiny_run, tmp_path,
                                                                          capsys, monkeypatch):
    run, _ = tiny_run
    calls = []
    monkeypatch.setattr(tool, "load_backend", lambda *a, **k: calls.append("load_backend"))
    blocker, json_out = blocked_path(tmp_path)
    rc = tool.main(["--checkpoint", str(run / "final_model.npz"), "--data_dir", str(shakespeare_data),
                    "--json_out", str(json_out)])
    line = one_error_line(capsys)
    assert rc == 1 and calls == [] and str(blocker) in line and "--json_out" in line
