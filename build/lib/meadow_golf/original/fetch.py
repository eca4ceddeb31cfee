"""Fetch the original work's published checkpoints and v4096 evaluation data from the Hugging Face hub.

    python scripts/fetch_original.py --out DIR [--what checkpoints|data|all] [--cache-dir D]

What it brings (both repositories are dataset repositories of the original's author):
- checkpoints (`akaiii/meadow-golf-checkpoints`): the six ablation checkpoints 5L_w0.npz,
  5L_w03.npz, 5L_w1.npz, 11L_w0.npz, 11L_w03.npz, 11L_w1.npz (all required), and the seed-run
  checkpoints 11L_w03_s{1337,42,2024,7,100}.npz and 11L_w0_s1337.npz where the repository has them
  (the original says they were kept off the hub; their absence is recorded, not an error).
- data (`akaiii/meadow-golf-v4096`): the tokenizer bpe_v4096.model and the validation shard
  fineweb_val_000000.bin, the only shard the original evaluator reads.

Layout of DIR, ready for eval_cf.py (`--data_dir DIR/data --tokenizer_path DIR/data/bpe_v4096.model`):
    DIR/checkpoints/<name>.npz
    DIR/data/bpe_v4096.model, DIR/data/fineweb_val_000000.bin
    DIR/manifest.json     what was fetched: hub repository, revision, path in the repository,
                          bytes and sha256 of every file, and what was looked for and not found
No meta.json is written: eval_cf.py takes the tokenizer from --tokenizer_path, and a meta.json
would present DIR/data as a prepared folder (prepared_folder.py), which needs training
shards this folder does not have.

The hub layout is INFERRED, not listed (the repositories could not be listed when this was
written): the original says the checkpoints repository "matches the ablation_results/ folder"
of its record, a folder the record does not contain, and names the files; its run scripts
download the v4096 repository into one folder and use <folder>/bpe_v4096.model and
<folder>/data/. So each file is looked up by NAME anywhere in its repository (the inferred path
first). A required name that is not there stops the run with one line naming it and listing what
the repository holds; a name found at several paths is taken only if every copy is identical.

Offline: with HF_HUB_OFFLINE=1 (or when the hub cannot be reached) everything comes from the
hub cache (HF_HUB_CACHE / HF_HOME, or --cache-dir), as in corpus_fineweb.py, whose hub
helpers this uses. Files are hard-linked from the cache (copied where a link is impossible).

All or nothing: every requested file is located before anything is downloaded, each part is
built in a hidden staging folder inside DIR and renamed into place only once complete and
verified, and manifest.json is written atomically last. A part already in DIR is verified
against manifest.json (sizes and sha256) and left as it is; one that does not match is refused,
never overwritten. Errors: one `error:` line on stderr, exit status 1.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from meadow_golf.data.challenge_format import ShardError, atomic_write_bytes, os_error_line, read_shard, read_shard_header
from meadow_golf.data.corpus_fineweb import HubFiles, hub_cache_dir, hub_error, place_file, revision_of
from meadow_golf.data.prepared_folder import PrepareError, file_sha256
from meadow_golf.common.cli_help import HelpFormatter

MANIFEST = "manifest.json"
TOOL = "fetch_original"
PARTS = ("checkpoints", "data")
CHECKPOINTS_REPO = "akaiii/meadow-golf-checkpoints"
DATA_REPO = "akaiii/meadow-golf-v4096"
LAYOUT_NOTE = (
    "hub layout inferred, not listed: files are looked up by name anywhere in each repository "
    "(inferred paths first: bpe_v4096.model at the root, data/fineweb_val_000000.bin)"
)
# The error line lists at most this many (grouped) entries of a repository.
LISTING_LIMIT = 30


@dataclass(frozen=True)
class Wanted:
    """One file to fetch: its name, where the original suggests it is, and what it is."""

    name: str
    kind: str  # checkpoint | tokenizer | val_shard
    required: bool
    inferred_path: str | None = None  # a path inside the repository to try before searching by name
    run: dict | None = None  # checkpoints: what the original says the file is


def _run(tag: str, arch: str, weight: float, seed: int, group: str) -> dict:
    return {"tag": tag, "arch": arch, "cdm_weight": weight, "train_seed": seed, "group": group}


# File names are the original's --save_path names (its run scripts: <tag>.npz).
CHECKPOINTS = tuple(
    Wanted(f"{tag}.npz", "checkpoint", True, run=_run(tag, arch, weight, 1337, "ablation6"))
    for tag, arch, weight in (
        ("5L_w0", "5L", 0.0), ("5L_w03", "5L", 0.3), ("5L_w1", "5L", 1.0),
        ("11L_w0", "11L", 0.0), ("11L_w03", "11L", 0.3), ("11L_w1", "11L", 1.0),
    )
) + tuple(
    Wanted(f"{tag}.npz", "checkpoint", False, run=_run(tag, "11L", weight, seed, "seeds"))
    for tag, weight, seed in (
        *((f"11L_w03_s{s}", 0.3, s) for s in (1337, 42, 2024, 7, 100)),
        ("11L_w0_s1337", 0.0, 1337),
    )
)
DATA = (
    Wanted("bpe_v4096.model", "tokenizer", True, inferred_path="bpe_v4096.model"),
    Wanted("fineweb_val_000000.bin", "val_shard", True, inferred_path="data/fineweb_val_000000.bin"),
)
PART_FILES = {"checkpoints": (CHECKPOINTS_REPO, CHECKPOINTS), "data": (DATA_REPO, DATA)}


class OneLineParser(argparse.ArgumentParser):
    """argparse whose complaints become one `error:` line (PrepareError) instead of a usage block."""

    def error(self, message):
        raise PrepareError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="fetch_original.py", description=__doc__,
                           formatter_class=HelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="folder to fill (or to verify if already filled)")
    parser.add_argument("--what", default="all", choices=("checkpoints", "data", "all"),
                        help="the original's checkpoints, its v4096 data, or both")
    parser.add_argument("--cache-dir", type=Path, help="Hugging Face hub cache (default HF_HUB_CACHE / HF_HOME)")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


# ----------------------------------------------------------------------------- locating


def compact_listing(files: list[str]) -> str:
    """The repository's files on one short line: runs of numbered shards folded (only long digit
    runs count, so 5L_w0.npz and 11L_w03_s1337.npz stay apart)."""
    groups: dict[str, list[str]] = {}
    for path in sorted(files):
        groups.setdefault(re.sub(r"\d{5,}", "#", path), []).append(path)
    entries = [paths[0] if len(paths) == 1 else f"{paths[0]} .. {paths[-1]} ({len(paths)} files)"
               for paths in groups.values()]
    if not entries:
        return "nothing"
    shown = ", ".join(entries[:LISTING_LIMIT])
    more = len(entries) - LISTING_LIMIT
    return f"{shown}{f', ... and {more} more' if more > 0 else ''} ({len(files)} files)"


def locate(wanted: Wanted, files: list[str]) -> list[str]:
    """Paths in the repository that may be `wanted`: its inferred path if present, else every
    file of that name."""
    if wanted.inferred_path and wanted.inferred_path in files:
        return [wanted.inferred_path]
    return sorted((f for f in files if PurePosixPath(f).name == wanted.name), key=lambda f: (f.count("/"), f))


@dataclass
class PartPlan:
    part: str
    repo: str
    hub: HubFiles
    files: list[str]  # the repository's listing
    found: dict[str, list[str]]  # name -> candidate paths
    absent: list[Wanted]  # optional files not in the repository


def plan_part(part: str, cache_dir: str | None) -> PartPlan:
    repo, wanted = PART_FILES[part]
    hub = HubFiles(repo, cache_dir)
    files = hub.list_files()
    found = {w.name: locate(w, files) for w in wanted}
    missing = [w.name for w in wanted if w.required and not found[w.name]]
    if missing:
        where = "its cached snapshot (offline)" if hub.offline else "it"
        raise PrepareError(
            f"{repo}: no file named {', '.join(missing)} (expected: {describe_expected(part)}; hub layout "
            f"inferred, so every folder was searched by name); {where} holds: {compact_listing(files)}"
        )
    absent = [w for w in wanted if not found[w.name]]
    return PartPlan(part, repo, hub, files, {k: v for k, v in found.items() if v}, absent)


def describe_expected(part: str) -> str:
    _, wanted = PART_FILES[part]
    return ", ".join(w.name for w in wanted if w.required)


# ----------------------------------------------------------------------------- downloading


def download(plan: PartPlan) -> dict[str, Path]:
    """Local cache paths of every candidate path of the plan (one snapshot_download call,
    restricted to those paths; from the cache only when offline)."""
    import huggingface_hub

    paths = sorted({p for candidates in plan.found.values() for p in candidates})
    try:
        snapshot = Path(
            huggingface_hub.snapshot_download(
                plan.repo,
                repo_type="dataset",
                cache_dir=plan.hub.cache_dir,
                allow_patterns=[glob.escape(p) for p in paths],
                local_files_only=plan.hub.offline,
            )
        )
    except Exception as e:  # noqa: BLE001 - any network/hub/cache failure is the user's to fix
        raise hub_error(plan.repo, e, plan.hub.offline, plan.hub.cache_dir) from None
    local = {}
    for path in paths:
        candidate = snapshot / path
        if not candidate.is_file():
            # Offline, the snapshot folder is returned as it is, whatever it lacks.
            raise PrepareError(f"{plan.repo}/{path}: listed but not in the hub cache {plan.hub.cache_dir or '(default)'}")
        local[path] = candidate
    return local


def choose_copy(plan: PartPlan, name: str, local: dict[str, Path]) -> tuple[str, list[str]]:
    """(path used, other identical paths) for a name; several different files of one name are an error."""
    candidates = plan.found[name]
    if len(candidates) > 1:
        digests = {p: file_sha256(local[p]) for p in candidates}
        if len(set(digests.values())) > 1:
            raise PrepareError(
                f"{plan.repo}: {len(candidates)} different files are named {name} ({', '.join(candidates)}); "
                "the hub layout is inferred, so which one the original meant is unknown"
            )
    return candidates[0], candidates[1:]


# ----------------------------------------------------------------------------- verifying


def describe_checkpoint(path: Path) -> dict:
    """What the .npz holds: tensor count, parameter count, blocks, and which naming it uses."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            shapes = {key: npz[key].shape for key in npz.files}
    except Exception as e:  # noqa: BLE001 - zip/numpy raise many types for a damaged file
        raise PrepareError(f"{path.name}: not a readable .npz checkpoint ({type(e).__name__}: {e})") from None
    if not shapes:
        raise PrepareError(f"{path.name}: the .npz holds no arrays")
    blocks = {int(m[1]) for key in shapes if (m := re.match(r"blocks\.(\d+)\.", key))}
    # The original names the attention/MLP matrices c_q/c_k/c_v/fc/proj, the project q/k/v/up/down.
    if any(key.endswith(".attn.c_q.weight") for key in shapes):
        naming = "original"
    elif any(key.endswith(".attn.q.weight") for key in shapes):
        naming = "project"
    else:
        naming = "unknown"
    return {
        "tensors": len(shapes),
        "params": int(sum(int(np.prod(s)) for s in shapes.values())),
        "num_layers": len(blocks),
        "model_dim": int(shapes["tok_emb.weight"][1]) if len(shapes.get("tok_emb.weight", ())) == 2 else None,
        "parameter_names": naming,
    }


def verify_data(folder: Path) -> dict[str, dict]:
    """The tokenizer loads and every validation id is one of its pieces (what eval_cf.py needs)."""
    import numpy as np
    import sentencepiece as spm

    tokenizer = folder / "bpe_v4096.model"
    try:
        vocab = spm.SentencePieceProcessor(model_file=str(tokenizer)).get_piece_size()
    except (OSError, RuntimeError) as e:
        raise PrepareError(f"{tokenizer.name}: not a readable SentencePiece model ({' '.join(str(e).split())})") from None
    shard = folder / "fineweb_val_000000.bin"
    try:
        tokens = read_shard_header(shard)
        top = int(np.max(read_shard(shard))) if tokens else -1
    except ShardError as e:
        raise PrepareError(f"{shard.name}: {e}") from None
    if top >= vocab:
        raise PrepareError(f"{shard.name}: token id {top} is outside the tokenizer's vocabulary of {vocab}")
    return {tokenizer.name: {"vocab_size": vocab}, shard.name: {"tokens": tokens}}


def stage_part(plan: PartPlan, staging: Path) -> dict:
    """Download, place and verify one part in `staging`; return its manifest record."""
    import huggingface_hub

    local = download(plan)
    _, wanted = PART_FILES[plan.part]
    records, revisions = {}, set()
    for w in wanted:
        if w.name not in plan.found:
            continue
        path_in_repo, duplicates = choose_copy(plan, w.name, local)
        target = staging / w.name
        place_file(local[path_in_repo], target)
        revisions.add(revision_of(local[path_in_repo]))
        record = {"path_in_repo": path_in_repo, "kind": w.kind, "bytes": target.stat().st_size,
                  "sha256": file_sha256(target)}
        if duplicates:
            record["identical_copies_at"] = duplicates
        if w.run is not None:
            record["run"] = w.run
            record.update(describe_checkpoint(target))
        records[w.name] = record
    if plan.part == "data":
        for name, extra in verify_data(staging).items():
            records[name].update(extra)
    revision = sorted(map(str, revisions))
    return {
        "folder": plan.part,
        "hub_repo": plan.repo,
        "repo_type": "dataset",
        "revision": revision[0] if len(revision) == 1 else revision,
        "fetched_offline": plan.hub.offline,
        "huggingface_hub": huggingface_hub.__version__,
        "fetched_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "layout": LAYOUT_NOTE,
        "files": records,
        "not_in_repository": {
            w.name: "optional: the original kept its seed-run checkpoints off the hub" for w in plan.absent
        },
        "repository_files": plan.files,
    }


def part_problem(folder: Path, record: dict | None) -> str | None:
    """What is wrong with an existing part folder relative to its manifest record, or None."""
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        return f"{MANIFEST} has no record of it"
    present = sorted(p.name for p in folder.iterdir())
    expected = sorted(record["files"])
    if present != expected:
        return f"it holds {', '.join(present) or 'nothing'}, {MANIFEST} lists {', '.join(expected)}"
    for name, entry in record["files"].items():
        path = folder / name
        if path.stat().st_size != entry.get("bytes") or file_sha256(path) != entry.get("sha256"):
            return f"{name} differs from the file recorded in {MANIFEST}"
    return None


# ----------------------------------------------------------------------------- the folder


def read_manifest(out: Path) -> dict:
    """The existing manifest ({} when there is none); a foreign folder or manifest is refused."""
    if not out.exists():
        return {}
    if not out.is_dir():
        raise PrepareError(f"{out}: exists and is not a folder; choose a different --out")
    path = out / MANIFEST
    if not path.exists():
        if any(p for p in out.iterdir() if not p.name.endswith(".partial")):
            raise PrepareError(f"{out}: folder is not empty and has no {MANIFEST}; choose a different --out")
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PrepareError(f"{path}: unreadable ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("tool") != TOOL or not isinstance(manifest.get("parts"), dict):
        raise PrepareError(f"{path}: not a {TOOL} manifest; choose a different --out")
    return manifest


def human_size(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def run(args: argparse.Namespace) -> None:
    from huggingface_hub.utils import disable_progress_bars
    from huggingface_hub.utils import logging as hub_logging

    # The hub client logs every retry; the one line that matters is raised as PrepareError.
    hub_logging.set_verbosity_error()
    if not sys.stderr.isatty():
        disable_progress_bars()  # bars in a log file are noise; on a terminal they show a long download
    out: Path = args.out
    parts = PARTS if args.what == "all" else (args.what,)
    created = not out.exists()
    manifest = read_manifest(out)
    todo = []
    for part in parts:
        folder = out / part
        if folder.exists():
            problem = part_problem(folder, manifest.get("parts", {}).get(part))
            if problem:
                raise PrepareError(f"{folder}: {problem}; nothing was changed, remove it or choose a different --out")
            print(f"nothing to do: {folder} already holds the fetched {part} (verified against {MANIFEST})")
        else:
            todo.append(part)
    if not todo:
        return

    cache_dir = hub_cache_dir(args.cache_dir)
    # Locate every requested file in every repository before downloading anything.
    plans = [plan_part(part, cache_dir) for part in todo]
    out.mkdir(parents=True, exist_ok=True)
    stagings = {}
    try:
        records = {}
        for plan in plans:
            stagings[plan.part] = Path(tempfile.mkdtemp(prefix=f".{plan.part}.", suffix=".partial", dir=out))
            os.chmod(stagings[plan.part], 0o755)  # mkdtemp makes it private; the result is an ordinary folder
            records[plan.part] = stage_part(plan, stagings[plan.part])
        for part, staging in stagings.items():
            os.replace(staging, out / part)
        manifest = {"tool": TOOL, "format": 1, "layout": LAYOUT_NOTE, "parts": {**manifest.get("parts", {}), **records}}
        atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    except BaseException:
        for staging in stagings.values():
            shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    for plan in plans:
        record = records[plan.part]
        total = sum(entry["bytes"] for entry in record["files"].values())
        source = "the hub cache (offline)" if record["fetched_offline"] else "the hub"
        print(f"fetched {plan.part}: {len(record['files'])} file(s), {human_size(total)}, from {plan.repo} "
              f"at {record['revision']} via {source} -> {out / plan.part}")
        if record["not_in_repository"]:
            print(f"  not in {plan.repo} (optional): {', '.join(record['not_in_repository'])}")
    print(f"manifest: {out / MANIFEST}")


def main(argv: list[str] | None = None) -> int:
    try:
        run(parse_args(argv))
    except (PrepareError, ShardError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except OSError as e:
        print(os_error_line(e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
