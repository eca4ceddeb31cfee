"""A training run's folder and process: which files are a run's, the newest step checkpoint, the
writability check before any compute, --overwrite's atomic removal, the stop on SIGTERM/SIGINT
and the command that resumes a stopped run.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
from pathlib import Path


# The files a run writes into CHECKPOINT_DIR besides the step checkpoints (what --overwrite deletes).
# Only its state counts as "another run" that a new run refuses to mix with: the logs of a run
# killed before its first checkpoint hold nothing to resume, and a new run rewrites them.
RUN_STATE_FILES = ("results.json", "final_model.npz", "final_model.int6.lzma")
RUN_LOG_FILES = ("train.log", "train_log.jsonl")


def step_checkpoints(ckpt_dir: Path, suffix: str) -> list[Path]:
    """The step_<N><suffix> files of ckpt_dir, oldest (smallest N) first (step_final is not a resume point)."""
    steps = []
    for p in Path(ckpt_dir).glob(f"step_*{suffix}"):
        tail = p.name[len("step_"):-len(suffix)]
        if tail.isdigit():
            steps.append((int(tail), p))
    return [p for _, p in sorted(steps)]


def newest_step_checkpoint(ckpt_dir: Path, suffix: str) -> Path | None:
    """The step_<N><suffix> with the largest N (step_final is not a resume point)."""
    steps = step_checkpoints(ckpt_dir, suffix)
    return steps[-1] if steps else None


def old_run_files(ckpt_dir: Path, with_logs: bool = True) -> list[Path]:
    """Another run's files in ckpt_dir: its step checkpoints (either backend's), its final files
    and results.json, and (with_logs) its logs."""
    if not ckpt_dir.is_dir():
        return []
    steps = [p for p in ckpt_dir.glob("step_*") if p.suffix in (".pt", ".safetensors")]
    names = RUN_STATE_FILES + (RUN_LOG_FILES if with_logs else ())
    return sorted(steps) + [ckpt_dir / n for n in names if (ckpt_dir / n).exists()]


def remove_old_run(ckpt_dir: Path) -> list[str]:
    """Delete another run's files from ckpt_dir (--overwrite), returning their names.

    The folder is first renamed aside in one step (an atomic rename), then recreated with only the
    entries that are not the old run's moved back, then the aside copy is deleted: if this is
    interrupted, the old run is either whole (nothing happened yet) or gone from ckpt_dir, never a
    part of it that --resume auto could pick up."""
    old = {p.name for p in old_run_files(ckpt_dir)}
    if not old:
        return []
    aside = ckpt_dir.parent / f".{ckpt_dir.name}.overwritten.{os.getpid()}"
    os.replace(ckpt_dir, aside)
    ckpt_dir.mkdir()
    for entry in aside.iterdir():
        if entry.name not in old:
            os.replace(entry, ckpt_dir / entry.name)
    shutil.rmtree(aside)
    return sorted(old)


def launched_by_torchrun() -> bool:
    """Whether torchrun started this process as one of several (WORLD_SIZE > 1). Here rather than in
    distributed.py (which re-exports it) so that the MLX trainer can refuse torchrun without torch."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class StopRequest:
    """SIGTERM / SIGINT ask the loop to stop after the current step (checkpoint, exit 0).

    A second SIGINT raises KeyboardInterrupt at once. The previous handlers come back on restore().
    Signals can only be caught in the main thread; elsewhere (a test runner's worker) nothing is installed.
    """

    def __init__(self):
        self.signal_name: str | None = None
        self._previous: dict = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass

    def _handle(self, signum, frame) -> None:
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# The flags whose value is a path: resume_command makes them absolute.
PATH_FLAGS = ("--data_dir", "--tokenizer_path", "--checkpoint_dir", "--save_path")


def resume_command(argv: list[str] | None = None, cwd: str | None = None) -> str:
    """This process's command line with --resume auto (what to run to continue after a stop),
    with the script and every path flag absolute, so that it works from any folder. --overwrite
    is dropped: it would delete the run to be continued (and is refused with --resume)."""
    argv = list(sys.argv if argv is None else argv)
    cwd = cwd or os.getcwd()

    def absolute(path: str) -> str:
        return os.path.normpath(os.path.join(cwd, os.path.expanduser(path)))

    out = [absolute(argv[0])] if argv and argv[0].endswith(".py") else argv[:1]
    i = 1
    while i < len(argv):
        a = argv[i]
        flag, eq, value = a.partition("=")
        if flag in ("--resume", "--overwrite"):
            i += 1 if (eq or flag == "--overwrite") else 2
            continue
        if flag in PATH_FLAGS:
            if eq:
                out.append(f"{flag}={absolute(value)}")
            elif i + 1 < len(argv):
                out.extend([a, absolute(argv[i + 1])])
                i += 1
            else:
                out.append(a)
        else:
            out.append(a)
        i += 1
    argv = out
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = [sys.executable] if world == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                     f"--nproc_per_node={world}"]
    return shlex.join([*launcher, *argv, "--resume", "auto"])
