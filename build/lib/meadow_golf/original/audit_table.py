"""One table for the audit of the original's published numbers (audit_original.sh), from JSON only.

    python audit_table.py --manifest FETCH/manifest.json --cells_dir OUT/cells [--out_dir OUT]

Reads scripts/fetch_original.py's manifest.json (which checkpoints were fetched, their sha256)
and, for each fetched checkpoint <tag>.npz, two eval_cf.py JSON files in --cells_dir:
- <tag>.original.json  `--protocol original`: the published protocol (experiments/METHOD.md §5:
  Pure-AR and CF each on their own random windows, bytes clamped to >= 1);
- <tag>.shared.json    `--protocol shared`: every decoder on one shared set of windows, no
  clamping; the valid decoders ar, cf_valid, cf_bidir_skeleton.
Writes OUT/audit_table.md and OUT/audit_table.json (atomically) and prints the markdown.

Which checkpoint each published number came from (the original's CF logs, their `ckpt:` lines):
the 6-run sweep scored INTERMEDIATE step checkpoints (step_8000 / step_5000 / step_1500), while
the hub's .npz files hold the FINAL state of the same runs, so those rows are not a
reproduction check and no 0.002 comparison is made for them. The seed runs were scored on
step_final.pt, which holds the same weights as their final .npz; only those rows (when their
checkpoints are on the hub at all) are compared within 0.002 BPB.

The published CF number is NOT a valid code length (experiments/METHOD.md §6); every place that
shows it says so. Exit status: 0 written; 1 bad input (one `error:` line, nothing written).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from meadow_golf.data.challenge_format import atomic_write_bytes, os_error_line
from meadow_golf.common.cli_help import HelpFormatter

TOLERANCE = 0.002  # BPB: how close a reproduction of the same checkpoint must come
# The original's evaluation settings (n_seqs, seq_len, seed): at these the original protocol
# redraws the published windows, so what it finds about their bytes holds for the published numbers.
PUBLISHED_SETTINGS = {"n_seqs": 500, "seq_len": 1024, "seed": 42}
VALID_DECODERS = ("ar", "cf_valid", "cf_bidir_skeleton")
CF_NOT_VALID = "NOT a valid code length, experiments/METHOD.md §6"


@dataclass(frozen=True)
class Published:
    """One published row: its numbers and the checkpoint they were computed on."""

    run: str
    scored: str  # the checkpoint the publication scored
    hub_state: str  # what the hub's .npz of the run holds
    same_checkpoint: bool  # whether those are the same weights
    pure_ar: float
    cf_total: float
    group: str


def _sweep(run, step, final, pure_ar, cf_total):
    return Published(run, f"step_{step}.pt (intermediate, step {step})", final, False, pure_ar, cf_total, "ablation6")


def _seed(run, pure_ar, cf_total):
    return Published(run, "step_final.pt (final state)", "final state, the same weights as step_final.pt",
                     True, pure_ar, cf_total, "seeds")


# Full-precision values from the JSON at the end of each of the original's CF logs. The hub
# states come from its training logs (the step where the 540 s budget stopped training; EMA
# starts at step 7999, which only 5L w=0 reached), and the original trainer writes the final .npz
# and step_final.pt from the same final weights.
PUBLISHED = {
    "5L_w0": _sweep("5L w=0", 8000, "final state, step 8079, EMA weights", 1.44789016705184, 2.437100816377302),
    "5L_w03": _sweep("5L w=0.3", 5000, "final state, step 5368", 1.5231493756157157, 1.4008786746995714),
    "5L_w1": _sweep("5L w=1.0", 5000, "final state, step 5377", 1.5841135640338342, 1.393893464225076),
    "11L_w0": _sweep("11L w=0", 5000, "final state, step 5351", 1.357406095601703, 2.394744727712248),
    "11L_w03": _sweep("11L w=0.3", 1500, "final state, step 1604", 1.4707942821001148, 1.3301016340603549),
    "11L_w1": _sweep("11L w=1.0", 1500, "final state, step 1603", 1.5413681222729079, 1.3526892239909336),
    "11L_w03_s1337": _seed("11L w=0.3 seed 1337", 1.442813515663147, 1.2923543097576307),
    "11L_w03_s42": _seed("11L w=0.3 seed 42", 1.4424875974655151, 1.302720034432593),
    "11L_w03_s2024": _seed("11L w=0.3 seed 2024", 1.4458824396133423, 1.3060134958387764),
    "11L_w03_s7": _seed("11L w=0.3 seed 7", 1.4445689916610718, 1.302476738479631),
    "11L_w03_s100": _seed("11L w=0.3 seed 100", 1.4456182718276978, 1.3007377814901728),
    "11L_w0_s1337": _seed("11L w=0 seed 1337 (control)", 1.3213800191879272, 2.4538075030330733),
}


class InputError(ValueError):
    """Bad input (one `error:` line)."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        raise InputError(message)


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: missing (audit_original.sh writes it)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: unreadable JSON ({e})") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: not a JSON object")
    return value


def number(d: dict, key: str, where: Path) -> float:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where}: {key} is {value!r}, not a finite number")
    return float(value)


def fetched_checkpoints(manifest: dict, where: Path) -> dict[str, dict]:
    """tag -> the manifest's record of <tag>.npz, in the catalog's order."""
    try:
        files = manifest["parts"]["checkpoints"]["files"]
    except (KeyError, TypeError):
        raise InputError(f"{where}: no fetched checkpoints (run scripts/fetch_original.py --what checkpoints)") from None
    by_tag = {name[: -len(".npz")]: record for name, record in files.items() if name.endswith(".npz")}
    unknown = sorted(set(by_tag) - set(PUBLISHED))
    if unknown:
        raise InputError(f"{where}: checkpoints with no published numbers: {', '.join(unknown)}")
    missing = [tag for tag, p in PUBLISHED.items() if p.group == "ablation6" and tag not in by_tag]
    if missing:
        raise InputError(f"{where}: the ablation checkpoints {', '.join(missing)} were not fetched")
    return {tag: by_tag[tag] for tag in PUBLISHED if tag in by_tag}


def check_checkpoint(cell: dict, tag: str, where: Path) -> None:
    """The cell scored <tag>.npz, not another run's file."""
    name = Path(str(cell.get("checkpoint", ""))).name
    if name != f"{tag}.npz":
        raise InputError(f"{where}: scored {cell.get('checkpoint')!r}, expected {tag}.npz")


def original_cell(path: Path, tag: str) -> dict:
    cell = read_json(path)
    if cell.get("protocol") != "original":
        raise InputError(f"{path}: protocol is {cell.get('protocol')!r}, expected 'original'")
    check_checkpoint(cell, tag, path)
    valid = cell.get("valid_code_length")
    # eval_cf.py says per number whether it is a code length; for Pure-AR that depends on
    # whether the byte clamp max(b, 1) added bytes on these windows. None: not said.
    pure_ar_valid = valid.get("pure_ar_bpb") if isinstance(valid, dict) else None
    unclamped = cell.get("pure_ar_bpb_unclamped_bytes")
    return {
        "pure_ar_bpb": number(cell, "pure_ar_bpb", path),
        "pure_ar_valid": pure_ar_valid if isinstance(pure_ar_valid, bool) else None,
        "pure_ar_bpb_unclamped_bytes": None if unclamped is None else number(cell, "pure_ar_bpb_unclamped_bytes", path),
        "cf_ar_part": number(cell, "cf_ar_part", path),
        "cf_cdm_part": number(cell, "cf_cdm_part", path),
        "cf_total": number(cell, "cf_total", path),
        "settings": {k: cell.get(k) for k in ("n_seqs", "seq_len", "seed")},
        "valid_code_length": valid,
    }


def shared_cell(path: Path, tag: str) -> dict:
    cell = read_json(path)
    check_checkpoint(cell, tag, path)
    protocol, decoders = cell.get("protocol"), cell.get("decoders")
    windows = cell.get("windows")
    if not isinstance(protocol, dict) or not isinstance(decoders, dict) or not isinstance(windows, dict):
        raise InputError(f"{path}: not eval_cf.py's shared-protocol JSON (protocol/decoders/windows)")
    scores = {}
    for name in VALID_DECODERS:
        if name in decoders:
            entry = decoders[name]
            if not isinstance(entry, dict):
                raise InputError(f"{path}: decoders.{name} is not an object")
            scores[name] = {"bpb": number(entry, "bpb", path), "valid_code_length": entry.get("valid_code_length") is True}
    return {
        "decoders": scores,
        "settings": {k: protocol.get(k) for k in ("n_seqs", "seq_len", "seed")},
        "windows_sha256": windows.get("sha256"),
    }


def one_setting(cells: dict[str, dict], kind: str) -> dict:
    """Every cell of a protocol ran with the same settings (else the table would mix them)."""
    distinct = {json.dumps(c["settings"], sort_keys=True) for c in cells.values()}
    if len(distinct) > 1:
        raise InputError(f"the {kind}-protocol cells ran with different settings: {' vs '.join(sorted(distinct))}")
    return next(iter(cells.values()))["settings"]


def comparison(p: Published, orig: dict, published_windows: bool) -> dict:
    """The 0.002 check, made only where the publication scored the same weights on the same
    windows (the original protocol at the published settings redraws them)."""
    if not p.same_checkpoint:
        reason = "different checkpoints: the publication scored an intermediate step, the hub holds the final state"
    elif not published_windows:
        reason = "not the published settings, so not the published windows"
    else:
        d_ar, d_cf = orig["pure_ar_bpb"] - p.pure_ar, orig["cf_total"] - p.cf_total
        return {"within_tolerance": abs(d_ar) <= TOLERANCE and abs(d_cf) <= TOLERANCE,
                "delta_pure_ar": d_ar, "delta_cf_total": d_cf, "reason": "same weights, same windows"}
    return {"within_tolerance": None, "delta_pure_ar": None, "delta_cf_total": None, "reason": reason}


def build(manifest_path: Path, cells_dir: Path) -> dict:
    manifest = read_json(manifest_path)
    fetched = fetched_checkpoints(manifest, manifest_path)
    originals = {tag: original_cell(cells_dir / f"{tag}.original.json", tag) for tag in fetched}
    shareds = {tag: shared_cell(cells_dir / f"{tag}.shared.json", tag) for tag in fetched}
    original_settings = one_setting(originals, "original")
    shared_settings = one_setting(shareds, "shared")
    window_digests = {c["windows_sha256"] for c in shareds.values()}
    if len(window_digests) != 1 or None in window_digests:
        raise InputError("the shared-protocol cells did not all score the same windows (windows.sha256 differs)")
    part = manifest["parts"]["checkpoints"]
    data = manifest["parts"].get("data") if isinstance(manifest["parts"].get("data"), dict) else {}
    shard = data.get("files", {}).get("fineweb_val_000000.bin", {}) if isinstance(data.get("files"), dict) else {}
    published_windows = original_settings == PUBLISHED_SETTINGS
    rows = []
    for tag, record in fetched.items():
        p = PUBLISHED[tag]
        orig = originals[tag]
        rows.append({
            "tag": tag,
            "run": p.run,
            "group": p.group,
            "published_checkpoint": p.scored,
            "scored_checkpoint": f"{tag}.npz from the hub ({p.hub_state})",
            "scored_sha256": record.get("sha256"),
            "scored_path_in_repo": record.get("path_in_repo"),
            "same_checkpoint": p.same_checkpoint,
            "published": {"pure_ar_bpb": p.pure_ar, "cf_total": p.cf_total,
                          # Same windows and bytes as the reproduction only at the published settings.
                          "pure_ar_valid": orig["pure_ar_valid"] if published_windows else None},
            "reproduced_original_protocol": {k: orig[k] for k in ("pure_ar_bpb", "pure_ar_valid",
                                             "pure_ar_bpb_unclamped_bytes", "cf_ar_part", "cf_cdm_part", "cf_total")},
            "evaluator_valid_code_length": orig["valid_code_length"],
            "comparison": comparison(p, orig, published_windows),
            "shared_protocol": shareds[tag]["decoders"],
        })
    return {
        "tool": "audit_table",
        "tolerance_bpb": TOLERANCE,
        "hub": {"repo": part.get("hub_repo"), "revision": part.get("revision"), "layout": part.get("layout"),
                "not_in_repository": sorted(part.get("not_in_repository", {})),
                "data_repo": data.get("hub_repo"), "data_revision": data.get("revision"),
                "val_shard_sha256": shard.get("sha256"), "val_shard_tokens": shard.get("tokens")},
        "original_protocol": {**original_settings, "published_settings": published_windows, "what": "experiments/METHOD.md §5: Pure-AR on RandomState(seed) "
                              "windows, CF on RandomState(seed+1) windows, bytes clamped to >= 1"},
        "shared_protocol": {**shared_settings, "windows_sha256": window_digests.pop(),
                            "what": "every decoder on the same windows, bytes unclamped"},
        "valid_code_length": {
            "published_pure_ar": "per row (published.pure_ar_valid): yes where the byte clamp added no bytes on the "
                                 "published windows (known only when the original protocol ran at the published "
                                 "settings, which redraw those windows), no where it did, null where unknown",
            "published_cf_total": f"no ({CF_NOT_VALID})",
            "reproduced_pure_ar": "per row (reproduced_original_protocol.pure_ar_valid), as eval_cf.py reports it",
            "reproduced_pure_ar_unclamped_bytes": "yes",
            "reproduced_cf_total": f"no ({CF_NOT_VALID})",
            "shared_protocol": "as each decoder's valid_code_length says (ar, cf_valid, cf_bidir_skeleton: yes)",
        },
        "rows": rows,
    }


# ----------------------------------------------------------------------------- markdown


def f4(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def pure_ar_text(value: float, valid: bool | None) -> str:
    """A Pure-AR number of the original protocol with what its clamped byte count makes of it."""
    if valid is True:
        return f4(value)
    if valid is False:
        return f"{f4(value)} (NOT a valid code length: clamped bytes)"
    return f"{f4(value)} (clamped bytes; validity not checked)"


def check_text(c: dict) -> str:
    if c["within_tolerance"] is None:
        return "n/a (different checkpoints)" if c["reason"].startswith("different") else "n/a (not the published windows)"
    verdict = "yes" if c["within_tolerance"] else "NO"
    return f"{verdict} (Pure-AR {c['delta_pure_ar']:+.4f}, CF {c['delta_cf_total']:+.4f})"


def valid_text(scores: dict, name: str) -> str:
    if name not in scores:
        return "—"
    s = scores[name]
    return f4(s["bpb"]) if s["valid_code_length"] else f"{f4(s['bpb'])} (NOT a valid code length)"


def markdown(table: dict) -> str:
    o, s, hub = table["original_protocol"], table["shared_protocol"], table["hub"]
    lines = [
        "# Audit of the original's published numbers on its hub checkpoints",
        "",
        f"Checkpoints: `{hub['repo']}` at `{hub['revision']}`; data: "
        + (f"`{hub['data_repo']}` at `{hub['data_revision']}`, fineweb_val_000000.bin with {hub['val_shard_tokens']} "
           f"tokens (sha256 {str(hub['val_shard_sha256'])[:16]}…)" if hub["data_repo"] else "not in the manifest")
        + f". {str(hub['layout']).capitalize()}.",
        f"Original protocol (experiments/METHOD.md §5): {o['n_seqs']} windows x {o['seq_len']}, seed {o['seed']}: "
        "Pure-AR and CF on different random windows, bytes clamped to >= 1.",
        f"Shared protocol: {s['n_seqs']} windows x {s['seq_len']}, seed {s['seed']}, the same windows for every "
        f"decoder and checkpoint (sha256 {str(s['windows_sha256'])[:16]}…), bytes unclamped.",
        "",
        "| run | checkpoint scored by the publication | checkpoint scored here | published Pure-AR (clamped bytes) | "
        "published CF (NOT a valid code length) | reproduced Pure-AR (original protocol, clamped bytes) | "
        "reproduced CF (original protocol; NOT a valid code length) | within 0.002? | "
        "ar (valid) | cf_valid (valid) | cf_bidir_skeleton (valid) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table["rows"]:
        rep = r["reproduced_original_protocol"]
        sha = str(r["scored_sha256"] or "")[:12]
        lines.append(
            f"| {r['run']} | {r['published_checkpoint']} | {r['scored_checkpoint']}, sha256 {sha}… | "
            f"{pure_ar_text(r['published']['pure_ar_bpb'], r['published']['pure_ar_valid'])} | "
            f"{f4(r['published']['cf_total'])} | {pure_ar_text(rep['pure_ar_bpb'], rep['pure_ar_valid'])} | "
            f"{f4(rep['cf_total'])} | {check_text(r['comparison'])} | "
            + " | ".join(valid_text(r["shared_protocol"], name) for name in VALID_DECODERS) + " |"
        )
    absent = table["hub"]["not_in_repository"]
    lines += [
        "",
        "- Bits per byte throughout. CF (published and reproduced) is NOT a valid code length: its pass 1 "
        "conditions on tokens that are decoded later (experiments/METHOD.md §6). Pure-AR under the original "
        "protocol divides a causal code length by byte counts clamped to >= 1 (experiments/METHOD.md §5.4): "
        "a valid code length per byte only where the clamp added no bytes, as marked per number (the "
        "published Pure-AR shares the reproduction's windows only at the published settings "
        f"{PUBLISHED_SETTINGS['n_seqs']} x {PUBLISHED_SETTINGS['seq_len']}, seed {PUBLISHED_SETTINGS['seed']}). "
        "ar, cf_valid and cf_bidir_skeleton are valid code lengths over unclamped bytes.",
        "- The 6-run rows: the publication scored intermediate step checkpoints, the hub holds the final "
        "state of the same runs, so these rows are new measurements, not a reproduction check "
        f"(\"n/a\"). Seed-run rows were published on step_final.pt, the same weights as the hub file, and are "
        f"checked within {TOLERANCE} BPB on both numbers (reproduced − published shown) when the original "
        "protocol ran at the published settings, which redraw the published windows.",
        "- Reference numbers: experiments/METHOD.md §7.",
    ]
    if absent:
        lines.append(f"- Not on the hub (optional seed-run checkpoints): {', '.join(absent)}.")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="audit_table.py", description=__doc__,
                           formatter_class=HelpFormatter)
    parser.add_argument("--manifest", required=True, type=Path, help="fetch_original.py's manifest.json")
    parser.add_argument("--cells_dir", required=True, type=Path, help="folder of <tag>.original.json / <tag>.shared.json")
    parser.add_argument("--out_dir", type=Path, help="write audit_table.md and audit_table.json here; none: print only")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        table = build(args.manifest, args.cells_dir)
        text = markdown(table)
        if args.out_dir is not None:
            atomic_write_bytes(args.out_dir / "audit_table.json", (json.dumps(table, indent=2) + "\n").encode())
            atomic_write_bytes(args.out_dir / "audit_table.md", text.encode())
    except InputError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except OSError as e:
        print(os_error_line(e), file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
