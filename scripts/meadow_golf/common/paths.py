"""Checks that an output can be written, made before any compute is spent on it (the trainer's
folders, the evaluators' JSON and per-window files): a run whose results cannot be saved is
refused at the start with one line naming the flag, not after minutes of work.
"""

from __future__ import annotations

import os
from pathlib import Path


def check_writable_folder(folder: Path, flag: str) -> None:
    """The folder (or, when it does not exist yet, its nearest existing parent) must be a
    writable folder, so that no training is spent on a run whose files cannot be written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: {flag} is a file, not a folder")
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise ValueError(f"{existing}: not a folder, so {flag} {folder} cannot be created")
    if not can_write_in(existing):
        raise ValueError(f"{existing}: not writable ({flag} {folder})")


def nearest_existing(path: Path) -> Path:
    """`path` itself, or the nearest folder above it that exists (where creating it starts)."""
    path = Path(path)
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def can_write_in(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def check_writable_file(path: Path, flag: str) -> None:
    """The file `path` can be written by an atomic replace (challenge_format.atomic_write_bytes,
    which creates missing folders): it is not a folder, and its folder is (or can be created as)
    a writable folder."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder, not a file")
    check_writable_folder(path.parent, f"{flag}'s folder")
