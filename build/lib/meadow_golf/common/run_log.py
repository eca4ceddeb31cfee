"""Run logging in the challenge style: `key:value` lines for people, JSON lines for programs.

Every record goes to stdout and to `<dir>/train.log` as one `key:value key:value ...` line, and
to `<dir>/train_log.jsonl` as one JSON object with the same keys plus `event`.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
from pathlib import Path


def format_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.4e}"
        return f"{value:.4f}"
    return str(value)


class RunLog:
    def __init__(self, out_dir: Path | None, enabled: bool = True, append: bool = False):
        self.enabled = enabled
        self._text = self._json = None
        if enabled and out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            mode = "a" if append else "w"
            self._text = open(out_dir / "train.log", mode, encoding="utf-8")
            self._json = open(out_dir / "train_log.jsonl", mode, encoding="utf-8")

    def record(self, event: str, **fields) -> None:
        if not self.enabled:
            return
        line = " ".join(f"{k}:{format_value(v)}" for k, v in fields.items())
        print(line, flush=True)
        if self._text:
            self._text.write(line + "\n")
            self._text.flush()
            self._json.write(json.dumps({"event": event, **fields}) + "\n")
            self._json.flush()

    def note(self, text: str) -> None:
        """A free-text line (config dumps, hints); text log only."""
        if not self.enabled:
            return
        print(text, flush=True)
        if self._text:
            self._text.write(text + "\n")
            self._text.flush()

    def close(self) -> None:
        for f in (self._text, self._json):
            if f:
                f.close()


def git_commit(repo_dir: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True,
                             text=True, timeout=10)
        commit = out.stdout.strip() if out.returncode == 0 else "unknown"
        # --no-optional-locks: status must not refresh the index, because on a loaded machine the
        # 10 s timeout can kill it while it holds .git/index.lock, which then blocks every commit.
        dirty = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain"], cwd=repo_dir,
                               capture_output=True, text=True, timeout=10)
        if commit != "unknown" and dirty.stdout.strip():
            commit += "+dirty"
        return commit
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("torch", "numpy", "sentencepiece", "mlx"):
        # The mlx package itself carries no __version__; its core module does.
        module = sys.modules.get("mlx.core" if name == "mlx" else name)
        if module is not None:
            info[name] = getattr(module, "__version__", "unknown")
    return info
