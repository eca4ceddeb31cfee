"""Run a command to completion while killing it (SIGKILL, whole process group) at random moments.

Used by the preemption tests: a preempted pod loses every process at once, with no chance to
clean up, and the user reruns the same command. `run_with_kills` does exactly that, `kills`
times, then lets the last run finish.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class KillReport:
    launches: int = 0
    kills: int = 0  # kills that hit a running process
    returncode: int | None = None
    outputs: list[str] = field(default_factory=list)


def _start(cmd: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group: killpg reaches its children


def run_with_kills(cmd: list[str], env: dict, kills: int, rng, *, ready: Callable[[int], bool] | None = None,
                   delay: tuple[float, float] = (0.0, 0.05), timeout: float = 600.0) -> KillReport:
    """Launch cmd; `kills` times: wait until ready(i) (i = 0, 1, ... the kill's index; if given),
    then a random delay, then SIGKILL the process group and relaunch. Finally wait for the last
    launch to end."""
    report = KillReport()
    deadline = time.monotonic() + timeout
    for i in range(kills):
        proc = _start(cmd, env)
        report.launches += 1
        while ready is not None and not ready(i) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(*delay))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            report.kills += 1
        out, _ = proc.communicate()
        report.outputs.append(out)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{cmd[:3]}: still not done after {timeout} s")
    proc = _start(cmd, env)
    report.launches += 1
    out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    report.outputs.append(out)
    report.returncode = proc.returncode
    return report
