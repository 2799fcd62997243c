"""The weights manifest: loading, validation, expected paths, on-disk state and recorded licence consent.

Standard library only, so ``python -m <pack> weights ...`` works before the pack's requirements are installed.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

DEFAULT_MANIFEST = Path(__file__).with_name("manifest.json")

# Folders (relative to ComfyUI's models dir) the pack reads weights from.
KNOWN_TARGETS = frozenset({"diff2lip/", "face_detection/", "gagavatar/", "flame/", "gagavatar/track/", "upscale_models/",
                           "syncnet/"})
KNOWN_CONSENTS = frozenset({"cc-by-nc-4.0", "flame"})
REQUIRED_FIELDS = ("id", "title", "filename", "target", "url", "size", "sha256", "licence", "consent", "features",
                   "optional", "download", "instructions")
CONSENT_FILE = "talkinghead_accepted_licences.json"
LOCK_FILE = "talkinghead_weights.lock.json"  # size + sha256 recorded at the first download of an unpinned entry
PART_SUFFIX = ".part"

# File states reported by list/verify.
MISSING, PARTIAL, PRESENT, VERIFIED, WRONG_SIZE, BAD_CHECKSUM = (
    "missing", "partial", "present", "verified", "wrong-size", "bad-checksum")

ManifestSource = Union[str, os.PathLike, Mapping[str, Any], None]


class WeightsError(RuntimeError):
    """A weights operation that cannot go on; the message says why and what to do."""


_ID_PATTERN = re.compile(r"^[a-z0-9_]+$")
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def load_manifest(manifest: ManifestSource = None) -> dict[str, dict]:
    """Return the manifest's entries by id, from a path, an already parsed dict, or the pack's own manifest.json.

    Raises ``ValueError`` listing every problem when the manifest is malformed.
    """
    data = manifest if isinstance(manifest, Mapping) else json.loads(Path(manifest or DEFAULT_MANIFEST).read_text("utf-8"))
    problems = validate_manifest(data)
    if problems:
        raise ValueError("invalid weights manifest:\n  " + "\n  ".join(problems))
    return {entry["id"]: entry for entry in data["entries"]}


def validate_manifest(data: Mapping[str, Any]) -> list[str]:
    """Every problem found in a parsed manifest (empty when it is valid)."""
    entries = data.get("entries")
    if not isinstance(entries, list) or not entries:
        return ["'entries' must be a non-empty list"]
    problems: list[str] = []
    for index, entry in enumerate(entries):
        problems += [f"entry {entry.get('id', index)!r}: {p}" for p in _entry_problems(entry)]
    problems += _duplicate_problems(entries, "id") + _duplicate_problems(entries, "filename")
    ids = {entry.get("id") for entry in entries}
    problems += [f"entry {e['id']!r}: archive {e['archive']!r} is not an entry id"
                 for e in entries if e.get("archive") is not None and e["archive"] not in ids]
    return problems


def _entry_problems(entry: Mapping[str, Any]) -> list[str]:
    missing = [field for field in REQUIRED_FIELDS if field not in entry]
    if missing:
        return [f"missing fields {missing}"]
    problems = []
    if not _ID_PATTERN.match(str(entry["id"])):
        problems.append("id must be lower-case letters, digits and '_'")
    if not entry["filename"] or "/" in entry["filename"] or "\\" in entry["filename"]:
        problems.append("filename must be a bare file name")
    if entry["target"] not in KNOWN_TARGETS:
        problems.append(f"target {entry['target']!r} is not one of {sorted(KNOWN_TARGETS)}")
    if entry["size"] is not None and (not isinstance(entry["size"], int) or entry["size"] <= 0):
        problems.append("size must be a positive integer or null")
    if entry["sha256"] is not None and not _SHA256_PATTERN.match(str(entry["sha256"])):
        problems.append("sha256 must be 64 lower-case hex digits or null")
    if not isinstance(entry["consent"], list) or not set(entry["consent"]) <= KNOWN_CONSENTS:
        problems.append(f"consent must be a list drawn from {sorted(KNOWN_CONSENTS)}")
    if not isinstance(entry["features"], list) or not entry["features"]:
        problems.append("features must be a non-empty list")
    if not isinstance(entry["download"], bool) or not isinstance(entry["optional"], bool):
        problems.append("download and optional must be booleans")
    problems += _download_problems(entry)
    return problems


def _download_problems(entry: Mapping[str, Any]) -> list[str]:
    if not entry["download"]:
        problems = [] if entry["instructions"] else ["a non-downloadable entry needs instructions for the user"]
        return problems + (["a non-downloadable entry must have url null"] if entry["url"] is not None else [])
    # FLAME may only be obtained after registering with MPI: the tool must never fetch it.
    if "flame" in entry["consent"]:
        return ["an entry needing FLAME consent must not be downloadable"]
    if not str(entry["url"] or "").startswith(("https://", "http://")):
        return ["a downloadable entry needs an http(s) url"]
    hosts = entry.get("hosts")
    if hosts is not None and (not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts)):
        return ["hosts must be a list of host names (where the url may redirect)"]
    return []


def allowed_hosts(entry: Mapping[str, Any], url: Optional[str] = None) -> list[str]:
    """Hosts a download of ``entry`` may be redirected to: the url's own host plus the entry's ``hosts`` list."""
    from urllib.parse import urlsplit

    own = urlsplit(url or entry["url"] or "").hostname
    return sorted({h.lower() for h in [*(entry.get("hosts") or []), *([own] if own else [])]})


def lock_records(models_dir: Union[str, os.PathLike]) -> dict[str, dict]:
    """The lock file's records by entry id (``{}`` when there is none)."""
    path = Path(models_dir) / LOCK_FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text("utf-8"))
    return {k: v for k, v in (data.get("entries") or {}).items() if isinstance(v, dict)}


def record_lock(models_dir: Union[str, os.PathLike], entry: Mapping[str, Any], size: int, sha256: str) -> Path:
    """Remember the size and sha256 of an unpinned entry's first accepted download (written atomically)."""
    records = lock_records(models_dir)
    records[entry["id"]] = {"filename": entry["filename"], "target": entry["target"], "size": int(size),
                            "sha256": sha256}
    path = Path(models_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"entries": records}, indent=2, sort_keys=True) + "\n", "utf-8")
    os.replace(tmp, path)
    return path


def pinned(entry: Mapping[str, Any], models_dir: Union[str, os.PathLike, None]) -> dict:
    """``entry`` with its size/sha256 taken from the lock file where the manifest has none."""
    entry = dict(entry)
    record = lock_records(models_dir).get(entry["id"]) if models_dir else None
    if record and record.get("filename") == entry["filename"]:
        if entry["sha256"] is None:
            entry["sha256"] = record.get("sha256")
        if entry["size"] is None:
            entry["size"] = record.get("size")
    return entry


def _duplicate_problems(entries: list, field: str) -> list[str]:
    counts = Counter(str(entry.get(field)) for entry in entries)
    return [f"duplicate {field} {value!r}" for value, count in sorted(counts.items()) if count > 1]


def get_entry(entry_id: str, manifest: ManifestSource = None) -> dict:
    """The manifest entry ``entry_id``; ``KeyError`` naming the known ids otherwise."""
    entries = load_manifest(manifest)
    if entry_id not in entries:
        raise KeyError(f"unknown weights id {entry_id!r}; known ids: {', '.join(entries)}")
    return entries[entry_id]


def expected_path(entry_id: str, models_dir: Union[str, os.PathLike], manifest: ManifestSource = None) -> Path:
    """Where the file of ``entry_id`` belongs under ComfyUI's models dir."""
    entry = get_entry(entry_id, manifest)
    return Path(models_dir) / entry["target"] / entry["filename"]


def part_path(final_path: Path) -> Path:
    """The partial-download file kept beside ``final_path`` until it is checked."""
    return final_path.with_name(final_path.name + PART_SUFFIX)


def sha256_of(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(entry: Mapping[str, Any], path: Path, digest: Optional[str] = None) -> str:
    """State of an existing file against the entry's size and, when its sha256 ``digest`` is given, its checksum."""
    if entry["size"] is not None and path.stat().st_size != entry["size"]:
        return WRONG_SIZE
    if digest is not None and entry["sha256"] is not None:
        return VERIFIED if digest == entry["sha256"] else BAD_CHECKSUM
    return PRESENT


def file_state(entry_id: str, models_dir: Union[str, os.PathLike], manifest: ManifestSource = None,
               check_hash: bool = False) -> str:
    """One of missing / partial / present / verified / wrong-size / bad-checksum for ``entry_id``.

    Without ``check_hash`` only the size is checked (fast); with it, files whose entry has a sha256 are hashed.
    """
    entry = pinned(get_entry(entry_id, manifest), models_dir)
    path = expected_path(entry_id, models_dir, manifest)
    if not path.is_file():
        return PARTIAL if part_path(path).is_file() else MISSING
    return check_file(entry, path, sha256_of(path) if check_hash and entry["sha256"] else None)


def accepted_licences(models_dir: Union[str, os.PathLike]) -> set[str]:
    """Licence names the user accepted earlier with ``--accept-licence`` for this models dir."""
    path = Path(models_dir) / CONSENT_FILE
    if not path.is_file():
        return set()
    return set(json.loads(path.read_text("utf-8")).get("accepted", []))


def record_licences(models_dir: Union[str, os.PathLike], names: Iterable[str]) -> None:
    """Remember accepted licence names so later fetches for the same models dir need no flag."""
    accepted = accepted_licences(models_dir) | set(names)
    path = Path(models_dir) / CONSENT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"accepted": sorted(accepted)}, indent=2) + "\n", "utf-8")


def missing_consent(entry: Mapping[str, Any], accepted: Iterable[str]) -> list[str]:
    """The entry's licence names not in ``accepted``."""
    return [name for name in entry["consent"] if name not in set(accepted)]
