"""Running one cell's command with its log, a heartbeat and signal handling; the plan's progress and ETA.

Cells run in this process (the trainer's and evaluator's main(), so a cell costs no interpreter
or torch start-up) unless they need a process of their own: NPROC > 1 (torchrun) and COMPILE=1
(torch.compile's caches are per process, and a fresh one per cell keeps each compiled cell what
it was). Either way every file a cell writes is written atomically, so a crash or SIGKILL of the
recipe loses nothing another cell finished, and a rerun resumes an interrupted cell from its
newest step checkpoint (the trainer's --resume auto, bitwise).

Signals: in this process the trainer's own handler takes SIGTERM/SIGINT (checkpoint, return 0);
a child process gets SIGTERM passed on (a pod's stop reaches only the main process) and Ctrl-C
reaches it through the process group. Standard library only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import signal
import subprocess
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

HEADER = "### "  # the line each call appends to a cell's log before its command's output


class CellFailed(Exception):
    """A cell's command exited non-zero: the recipe stops with that exit status."""

    def __init__(self, message: str, returncode: int):
        super().__init__(message)
        self.returncode = returncode


class StoppedBySignal(Exception):
    """The trainer took SIGTERM/SIGINT, saved a step checkpoint and returned without finishing."""


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def last_output_line(log: Path) -> str | None:
    """The log's last line written by the command (never the recipe's own `###` header), or None."""
    try:
        with open(log, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 8192))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    for line in reversed(tail.replace("\r", "\n").splitlines()):
        if line.startswith(HEADER):
            return None  # the command has printed nothing since this call began
        if line.strip():
            return line[:160]
    return None


class Heartbeat:
    """While a cell runs, a `[beat ]` line every `every` seconds with the last line of its log.
    Before the command's first line the beat says so, rather than quote the command line."""

    def __init__(self, name: str, log: Path, every: int, out: TextIO):
        self.name, self.log, self.every, self.out = name, log, every, out
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True) if every > 0 else None

    def line(self, elapsed: int) -> str:
        last = last_output_line(self.log)
        if last is None:
            return (f"[beat ] {self.name}: {elapsed} s in; no output yet (loading and the first "
                    f"steps or windows; its command is the last ### line of {self.log})")
        return f"[beat ] {self.name}: {elapsed} s in; log: {last}"

    def _loop(self) -> None:
        beat = 1
        while not self._stop.wait(max(0.0, self.start + beat * self.every - time.monotonic())):
            self.out.write(self.line(int(time.monotonic() - self.start)) + "\n")
            self.out.flush()
            beat += 1

    def __enter__(self):
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class Tee:
    """A text stream writing to the log and (VERBOSE=1) to the terminal."""

    def __init__(self, *streams: TextIO):
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()

    def isatty(self) -> bool:
        return False


def call_main(module: str, argv: list[str]) -> int:
    """module.main(argv) as its script would exit: SystemExit's code, a traceback's 1."""
    try:
        rc = importlib.import_module(module).main(argv)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        raise
    except Exception:  # a bug in a cell: its traceback goes to the cell's log, the recipe stops
        traceback.print_exc()
        rc = 1
    return int(rc or 0)


@dataclass
class Runner:
    """Runs a cell's command with its output appended to the cell's log."""

    out: TextIO
    heartbeat_secs: int = 60
    verbose: bool = False

    def in_process(self, log: Path, name: str, shown: list[str], module: str, argv: list[str]) -> int:
        """module.main(argv) here; shown is the equivalent command line, written at the top."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", buffering=1) as f:
            f.write(f"{HEADER}{utc_now()} {' '.join(shown)}\n")
            stream = Tee(f, self.out) if self.verbose else f
            with Heartbeat(name, log, 0 if self.verbose else self.heartbeat_secs, self.out), \
                    contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
                return call_main(module, argv)

    def in_child(self, log: Path, name: str, cmd: list[str], env: dict | None = None) -> int:
        """cmd as a process of its own; SIGTERM to the recipe is passed on and the recipe waits."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", buffering=1) as f:
            f.write(f"{HEADER}{utc_now()} {' '.join(cmd)}\n")
            f.flush()
            if self.verbose:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            else:
                proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
            previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM)),
                        signal.SIGINT: signal.signal(signal.SIGINT, lambda *_: None)}
            try:
                with Heartbeat(name, log, 0 if self.verbose else self.heartbeat_secs, self.out):
                    if self.verbose:
                        for line in proc.stdout:
                            f.write(line)
                            self.out.write(line)
                    return proc.wait()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)


def tail(log: Path, n: int = 5) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


class Progress:
    """`[plan ] <what> cell K/N NAME; elapsed E s; eta ...` before each cell: the cells left times
    the mean time of the cells that actually ran (a skipped cell costs nothing, so the ETA errs
    high when later cells are skipped too). Before any has run, training uses the budget per cell
    (a lower bound) and evaluation has no estimate."""

    def __init__(self, what: str, total: int, budget_secs: int, out: TextIO, clock: Callable[[], float] = time.monotonic):
        self.what, self.total, self.budget, self.out, self.clock = what, total, budget_secs, out, clock
        self.t0 = clock()
        self.ran = 0
        self.ran_secs = 0

    def seconds(self) -> int:
        """Whole seconds since the loop began (one clock for the elapsed time and the cells' times)."""
        return int(self.clock() - self.t0)

    def before(self, k: int, name: str) -> int:
        left = self.total - k + 1
        if self.ran:
            eta = f"eta {left * self.ran_secs // self.ran} s ({left} cells left at the mean of the {self.ran} run so far)"
        elif self.budget:
            eta = f"eta >= {left * self.budget} s ({left} cells left at the budget of {self.budget} s each)"
        else:
            eta = "eta unknown until a cell has run"
        now = self.seconds()
        print(f"[plan ] {self.what} cell {k}/{self.total} {name}; elapsed {now} s; {eta}", file=self.out, flush=True)
        return now

    def after(self, started: int, ran: bool) -> None:
        if ran:
            self.ran += 1
            self.ran_secs += self.seconds() - started


def fail(what: str, rc: int, log: Path) -> CellFailed:
    return CellFailed(f"{what} failed (exit status {rc}); last lines of {log}:\n{tail(log)}", rc)
