"""The real challenge data (FineWeb, already tokenized) from the Hugging Face hub.

Variants (dataset repositories, fetched with huggingface_hub):
- `fineweb-sp1024`: `willdepueoai/parameter-golf`, shards in `datasets/datasets/fineweb10B_sp1024/`,
  tokenizer `datasets/tokenizers/fineweb_1024_bpe.model` (the challenge's own data).
- `fineweb-v4096`: `akaiii/meadow-golf-v4096`, the original ablation's v4096 retokenization, with
  the tokenizer `bpe_v4096.model` at the repository root. ASSUMPTION (from the original work's
  run scripts, which point DATA_DIR at `<download>/data` and TOKENIZER at
  `<download>/bpe_v4096.model`; the repository itself could not be listed from here): shards
  are `data/fineweb_{train,val}_NNNNNN.bin`, or the same names at the repository root, which is
  looked at when `data/` holds no validation shard.

Which files: all validation shards and the first `--train-shards` training shards (sorted
names). The file list comes from the hub (`list_repo_files`) when online, or from the cached
snapshot of the repository when offline (HF_HUB_OFFLINE=1) or when the hub cannot be reached.
Downloads go to the usual hub cache (HF_HUB_CACHE / HF_HOME, or `--cache-dir`) and are
hard-linked into the prepared folder (copied where a link is impossible), so a second copy of
large shards is not made.

Any failure to reach the hub, or a file missing from an offline cache, becomes one PrepareError
line that says how to fix it.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from meadow_golf.data.challenge_format import SHARD_NAME, ShardError, read_shard_header
from meadow_golf.data.prepared_folder import PrepareError

HUB_FIX = "set HF_HUB_OFFLINE=1 with a filled cache or check the network"


@dataclass(frozen=True)
class FinewebVariant:
    repo: str
    shard_dirs: tuple[str, ...]  # candidate folders inside the repo, first one with val shards wins
    tokenizer: str  # path inside the repo
    vocab_size: int  # nominal vocabulary of the variant's tokenizer


VARIANTS = {
    "fineweb-sp1024": FinewebVariant(
        repo="willdepueoai/parameter-golf",
        shard_dirs=("datasets/datasets/fineweb10B_sp1024",),
        tokenizer="datasets/tokenizers/fineweb_1024_bpe.model",
        vocab_size=1024,
    ),
    "fineweb-v4096": FinewebVariant(
        repo="akaiii/meadow-golf-v4096",
        shard_dirs=("data", ""),
        tokenizer="bpe_v4096.model",
        vocab_size=4096,
    ),
}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (read here at call time, not import time)."""
    return _env_flag("HF_HUB_OFFLINE")


def hub_cache_dir(cache_dir: str | Path | None) -> str | None:
    """--cache-dir, else HF_HUB_CACHE, else HF_HOME/hub, else None (huggingface_hub's default)."""
    if cache_dir:
        return str(cache_dir)
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def hub_error(repo: str, error: BaseException, offline: bool, cache_dir: str | None) -> PrepareError:
    where = f"offline, and not in the cache {cache_dir or 'at the default location'}" if offline else "online"
    return PrepareError(f"cannot reach the Hugging Face hub for {repo} ({where}: {_short(error)}); {HUB_FIX}")


class HubFiles:
    """Lists and fetches one dataset repository's files, online or from the cache only."""

    def __init__(self, repo: str, cache_dir: str | None):
        self.repo = repo
        self.cache_dir = cache_dir
        self.offline = hub_offline()

    def list_files(self) -> list[str]:
        import huggingface_hub

        if not self.offline:
            try:
                return huggingface_hub.HfApi().list_repo_files(self.repo, repo_type="dataset")
            except Exception as e:  # noqa: BLE001 - any network/hub failure: fall back to the cache
                online_error = e
            # The hub is unreachable: use the cache as if offline, and say so if that fails too.
            self.offline = True
            try:
                return self._cached_files()
            except Exception:  # noqa: BLE001
                raise hub_error(self.repo, online_error, False, self.cache_dir) from None
        try:
            return self._cached_files()
        except Exception as e:  # noqa: BLE001
            raise hub_error(self.repo, e, True, self.cache_dir) from None

    def _cached_files(self) -> list[str]:
        import huggingface_hub

        snapshot = Path(
            huggingface_hub.snapshot_download(
                self.repo, repo_type="dataset", cache_dir=self.cache_dir, local_files_only=True
            )
        )
        return sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())

    def fetch(self, path_in_repo: str) -> Path:
        """Local path of one file (downloaded into the hub cache if needed and allowed)."""
        import huggingface_hub

        try:
            local = huggingface_hub.hf_hub_download(
                self.repo,
                path_in_repo,
                repo_type="dataset",
                cache_dir=self.cache_dir,
                local_files_only=self.offline,
            )
        except Exception as e:  # noqa: BLE001 - any network/hub/cache failure is the user's to fix
            raise hub_error(self.repo, e, self.offline, self.cache_dir) from None
        return Path(local)


def revision_of(local_path: Path) -> str | None:
    """The commit hash in a hub cache path `.../snapshots/<commit>/<file>`, if it is one."""
    parts = local_path.parts
    if "snapshots" in parts:
        candidate = parts[parts.index("snapshots") + 1]
        if re.fullmatch(r"[0-9a-f]{40}", candidate):
            return candidate
    return None


def choose_shards(variant: FinewebVariant, files: list[str], train_shards: int) -> tuple[list[str], list[str]]:
    """(train paths, val paths) inside the repo: the first `train_shards` train shards, all val ones."""
    for shard_dir in variant.shard_dirs:
        here = sorted(
            f
            for f in files
            if PurePosixPath(f).parent == PurePosixPath(shard_dir) and SHARD_NAME.match(PurePosixPath(f).name)
        )
        val = [f for f in here if "_val_" in PurePosixPath(f).name]
        train = [f for f in here if "_train_" in PurePosixPath(f).name]
        if val:
            if len(train) < train_shards:
                raise PrepareError(
                    f"{variant.repo}: {len(train)} train shard(s) available under {shard_dir or 'the root'}"
                    f"{' in the offline cache' if hub_offline() else ''}, {train_shards} requested (--train-shards)"
                )
            return train[:train_shards], val
    places = ", ".join(d or "the repository root" for d in variant.shard_dirs)
    raise PrepareError(f"{variant.repo}: no fineweb_val_*.bin shards found under {places}")


def place_file(source: Path, target: Path) -> None:
    """Hard-link the (resolved) cached file into the folder; copy if linking is impossible.

    The folder is a staging folder renamed into place only when complete, so a partial copy is
    never seen under the requested name; the fsync makes the copy durable before that rename.
    """
    real = source.resolve()
    try:
        os.link(real, target)
    except OSError:
        shutil.copyfile(real, target)
        with open(target, "rb+") as f:
            os.fsync(f.fileno())


def prepare_fineweb(folder: Path, corpus: str, train_shards: int, cache_dir: str | Path | None) -> dict:
    """Fetch the variant's shards and tokenizer into `folder`; return the corpus part of meta."""
    import huggingface_hub
    from huggingface_hub.utils import logging as hub_logging

    # The hub client logs every retry; the one line that matters is raised as PrepareError.
    hub_logging.set_verbosity_error()
    variant = VARIANTS[corpus]
    hub = HubFiles(variant.repo, hub_cache_dir(cache_dir))
    train, val = choose_shards(variant, hub.list_files(), train_shards)

    revisions = set()
    files = {}
    for path_in_repo in [variant.tokenizer, *train, *val]:
        local = hub.fetch(path_in_repo)
        name = PurePosixPath(path_in_repo).name
        if name != PurePosixPath(variant.tokenizer).name:
            try:
                read_shard_header(local)
            except ShardError as e:
                raise PrepareError(f"{variant.repo}/{path_in_repo}: {e}") from None
        place_file(local, folder / name)
        files[name] = path_in_repo
        revisions.add(revision_of(local))

    return {
        "tokenizer": PurePosixPath(variant.tokenizer).name,
        "source": {
            "hub_repo": variant.repo,
            "repo_type": "dataset",
            "revision": revisions.pop() if len(revisions) == 1 else sorted(map(str, revisions)),
            "files": files,
            "huggingface_hub": huggingface_hub.__version__,
            "fetched_offline": hub.offline,
        },
        "splits": {
            "train": f"the first {len(train)} training shard(s) of the repository: "
            + ", ".join(PurePosixPath(p).name for p in train),
            "val": f"all {len(val)} validation shard(s) of the repository: "
            + ", ".join(PurePosixPath(p).name for p in val),
        },
    }
