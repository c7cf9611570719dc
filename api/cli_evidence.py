"""`fieldproof hash FILE...` and `fieldproof dedup PATH... [--threshold N]` (same rule as the service: hashes, local
features for pairs only within reach, and the same-capture / same-scene decision, printed as ``verdict``);
`fieldproof evidence rehash` (stored photos' hashes brought up to the current hashing: evidence.rehash)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import FieldproofError
from evidence.match import DEFAULT_THRESHOLD  # the parser shows the default, so every command loads it


def _media(path: Path, *, variants: bool = False):
    """(kind, sha256, [ImageHashes per frame], frame times) for a file, after the same intake as an upload
    (type from content, size and per-format pixel caps, full decode, polyglot check), decoded once."""
    # lazy: every fieldproof command loads this module; only this command needs these
    from core.config import get_settings
    from evidence.hashing import hash_image
    from evidence.intake import inspect_upload
    from evidence.service import MAX_PIXELS
    from evidence.video import hash_video

    data = path.read_bytes()
    info = inspect_upload(data, max_bytes=get_settings().max_upload_bytes, max_pixels=MAX_PIXELS)
    if info.kind == "video":
        frames = hash_video(data)
        return "video", info.sha256, [f.hashes for f in frames], [f.t for f in frames]
    # Intake's decode made the working image: hashing it gives the original's hashes without decoding again.
    return "image", info.sha256, [hash_image(info.grey, with_variants=variants)], None


def _error_text(exc: Exception) -> str:
    """A clean one-line reason: domain errors carry their own; anything else is named, not dumped."""
    if isinstance(exc, FieldproofError):
        return f"{exc.code}: {exc.detail}"
    if isinstance(exc, OSError):
        return f"cannot read the file ({exc.strerror or type(exc).__name__})"
    return f"cannot be processed ({type(exc).__name__})"


def _hash(args: argparse.Namespace) -> int:
    # lazy: every fieldproof command loads this module; only this command needs these
    from evidence.hashing import to_hex

    failed = False
    for name in args.files:
        out = {"path": name}
        try:
            kind, sha, frames, times = _media(Path(name))
            out.update(sha256=sha, kind=kind)
            if kind == "video":
                out["frames"] = [{"t": t, "phash": to_hex(h.phash["full"]), "dhash": to_hex(h.dhash["full"])}
                                 for t, h in zip(times, frames)]
            else:
                out.update(phash=to_hex(frames[0].phash["full"]), dhash=to_hex(frames[0].dhash["full"]))
        except Exception as exc:  # noqa: BLE001 - one bad file is an error line, the batch goes on
            failed = True
            out["error"] = _error_text(exc)
        print(json.dumps(out))
    return 1 if failed else 0


def _files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        out += sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    return out


def _verdict(a: Path, b: Path, ma, mb, match) -> str:
    """The service's decision for a pair (evidence.sameness): files have no check-in here, so EXIF times are taken as
    they are; working images are decoded again only for pairs the hashes matched."""
    # lazy: every fieldproof command loads this module; only this command needs these
    from core.config import get_settings
    from evidence.sameness import Side, decide, pixels_of
    from evidence.intake import inspect_upload
    from evidence.service import MAX_PIXELS

    infos = [inspect_upload(p.read_bytes(), max_bytes=get_settings().max_upload_bytes, max_pixels=MAX_PIXELS)
             for p in (a, b)]
    pixels = pixels_of(infos[0].grey, infos[1].grey, match) if match and ma[0] == mb[0] == "image" else None
    verdict = decide(*(Side(i.sha256, i.exif, True) for i in infos), match, pixels)
    return verdict.kind if verdict else ""


def _candidate_pairs(media: dict, reach: int) -> list[tuple[Path, Path]]:
    """The pairs (in path order) the rule could match: some hash of one (a region, in some orientation) within
    ``reach`` of a region hash of the other, as the service's index finds them. Every pair the rule accepts is
    among them (each of its comparisons, the low-texture one too, is a distance of at most ``reach`` between such
    hashes; identical files have identical hashes), so this gives the output of comparing every pair, in one
    search per file instead of a comparison per pair (n² / 2 of ~0.2 ms: hours for 10,000 photos)."""
    # lazy: every fieldproof command loads this module; only this command needs these
    from evidence.index import HashIndex

    keys = sorted(media)
    owners, hashes = [], []
    for i, f in enumerate(keys):
        for frame in media[f][2]:
            owners += [i] * len(frame.phash)
            hashes += frame.phash.values()
    index, pairs = HashIndex.from_arrays(owners, hashes), set()
    for i, f in enumerate(keys):
        queries = {h for frame in media[f][2] for var in (frame.variants or [frame.phash]) for h in var.values()}
        near, _ = index.near(queries, reach)
        pairs.update((min(i, j), max(i, j)) for j in near if j != i)
    by_bytes: dict[str, list[int]] = {}
    for i, f in enumerate(keys):  # identical files, whatever their hashes (a video's frames may be none)
        by_bytes.setdefault(media[f][1], []).append(i)
    pairs.update((i, j) for same in by_bytes.values() for n, i in enumerate(same) for j in same[n + 1:])
    return [(keys[i], keys[j]) for i, j in sorted(pairs)]


def _dedup(args: argparse.Namespace) -> int:
    # lazy: every fieldproof command loads this module; only this command needs these
    from tqdm import tqdm
    from evidence.match import REACH_THRESHOLD, compare_media

    files, media, failed = _files(args.paths), {}, False
    for f in tqdm(files, desc="hashing", unit="file", file=sys.stderr, disable=len(files) < 50):
        try:
            media[f] = _media(f, variants=True)
        except Exception as exc:  # noqa: BLE001 - one bad file is an error line, the batch goes on
            failed = True
            print(json.dumps({"path": str(f), "error": _error_text(exc)}), file=sys.stderr)
    reach = max(args.threshold, REACH_THRESHOLD)
    for a, b in _candidate_pairs(media, reach):
        (_, sha_a, ha, _), (_, sha_b, hb, _) = media[a], media[b]
        if sha_a == sha_b:
            print(json.dumps({"a": str(a), "b": str(b), "distance": 0, "method": "sha256", "verdict": "same_capture"}))
            continue
        m = compare_media(ha, hb, args.threshold, reach) or compare_media(hb, ha, args.threshold, reach)
        verdict = _verdict(a, b, media[a], media[b], m) if m else ""
        if verdict:
            print(json.dumps({"a": str(a), "b": str(b), "distance": m.distance, "method": m.method,
                              "verdict": verdict}))
    return 1 if failed else 0


def _rehash(args: argparse.Namespace) -> int:
    # lazy: every fieldproof command loads this module; only this command needs these
    from tqdm import tqdm
    from core.db import session_scope
    from evidence import rehash

    total = {"checked": 0, "changed": 0, "failed": [], "last_id": args.after_id}
    try:  # the summary is printed however the run ends: its last_id is where another run resumes (--after-id)
        with session_scope() as db:
            with tqdm(total=rehash.remaining(db, args.after_id), unit="photo", file=sys.stderr) as bar:
                for step in rehash.rehash_all(db, args.after_id, args.batch):
                    total["checked"] += step.checked
                    total["changed"] += step.changed
                    total["failed"] += step.failed
                    total["last_id"] = step.last_id
                    bar.update(step.checked)
                    bar.set_postfix(changed=total["changed"], failed=len(total["failed"]), last_id=step.last_id)
    finally:
        print(json.dumps(total))
    return 1 if total["failed"] else 0


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def register(sub) -> None:
    """Add the ``hash``, ``dedup`` and ``evidence rehash`` commands."""
    h = sub.add_parser("hash", help="perceptual hashes of photos and videos, one JSON line per file")
    h.add_argument("files", nargs="+")
    h.set_defaults(func=_hash)
    d = sub.add_parser("dedup", help="near-duplicate pairs among files and directories")
    d.add_argument("paths", nargs="+")
    d.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD)
    d.set_defaults(func=_dedup)
    ev = sub.add_parser("evidence", help="stored evidence tools").add_subparsers(dest="evidence_command",
                                                                                 required=True)
    re_ = ev.add_parser("rehash", help="recompute stored photos' hashes with the current hashing (safe beside "
                                       "running workers; resumable with --after-id)")
    re_.add_argument("--batch", type=_positive, default=200, help="photos per transaction (default 200)")
    re_.add_argument("--after-id", type=int, default=0, help="start after this evidence id (a stopped run's last_id)")
    re_.set_defaults(func=_rehash)
