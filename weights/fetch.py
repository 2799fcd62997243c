"""``python scripts/talkinghead.py weights list | fetch | verify``: see, download and check the pack's external weight files.

Also the messages loaders use when a file is missing (:func:`missing_message`, :func:`missing_message_for_file`).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

from .download import DownloadError, download_file
from .manifest import (BAD_CHECKSUM, LOCK_FILE, PRESENT, VERIFIED, WRONG_SIZE, ManifestSource, WeightsError,
                       accepted_licences, allowed_hosts, check_file, expected_path, file_state, get_entry,
                       load_manifest, missing_consent, pinned, record_licences, record_lock, sha256_of)

# abspath, not resolve(): a pack symlinked into custom_nodes must still find that ComfyUI's models dir.
PACK_DIR = Path(os.path.abspath(__file__)).parents[1]
MODELS_DIR_PLACEHOLDER = "<ComfyUI>/models"


def find_models_dir(pack_dir: Optional[Path] = None) -> Optional[Path]:
    """ComfyUI's models dir, found by walking up from the pack (installed as ``<ComfyUI>/custom_nodes/<pack>``)."""
    pack_dir = Path(pack_dir or PACK_DIR)
    for candidate in (pack_dir, pack_dir.resolve()):
        for parent in candidate.parents:
            if parent.name == "custom_nodes" and (parent.parent / "models").is_dir():
                return (parent.parent / "models").resolve()  # an embedded runner links the user's folder there
    return None


def cli_command() -> str:
    """How to call the pack's command line whatever the pack folder is named (``python -m`` needs a valid name)."""
    return f"{shlex.quote(sys.executable or 'python3')} {shlex.quote(str(PACK_DIR / 'scripts' / 'talkinghead.py'))}"


def fetch_command(entry: dict, models_dir: Union[str, os.PathLike]) -> str:
    """The exact shell command that fetches ``entry`` into ``models_dir``."""
    flags = "".join(f" --accept-licence {name}" for name in entry["consent"])
    return f"{cli_command()} weights fetch {entry['id']}{flags} --models-dir {shlex.quote(str(models_dir))}"


def missing_message(entry_id: str, models_dir: Union[str, os.PathLike], manifest: ManifestSource = None) -> str:
    """A "file missing" error text naming the file, its folder and how to get it (the exact fetch command)."""
    entry = get_entry(entry_id, manifest)
    path = expected_path(entry_id, models_dir, manifest)
    head = (f"{entry['title']} is missing: put {entry['filename']} in the folder {path.parent} "
            f"(licence: {entry['licence']}).")
    if entry["download"]:
        return f"{head} Download it with: {fetch_command(entry, models_dir)}"
    if entry.get("converter") == "talkinghead.py flame convert":
        return (f"{head} {entry['instructions']} The exact command: {cli_command()} flame convert "
                f"/path/to/generic_model.pkl --models-dir {shlex.quote(str(models_dir))}")
    return f"{head} {entry['instructions']}"


def missing_message_for_file(filename: str, folder: Optional[str] = None,
                             models_dir: Union[str, os.PathLike, None] = None, manifest: ManifestSource = None) -> str:
    """Like :func:`missing_message`, for a file chosen by name in a ComfyUI model folder (``folder`` like "diff2lip")."""
    models_dir = models_dir or find_models_dir() or MODELS_DIR_PLACEHOLDER
    entries = load_manifest(manifest).values()
    for entry in entries:
        if entry["filename"] == filename:
            return missing_message(entry["id"], models_dir, manifest)
    known = [entry["filename"] for entry in entries if entry["target"].strip("/") == (folder or "").strip("/")]
    listing = f"Files this pack uses in {folder}: {', '.join(known)}. " if known else ""
    return (f"{listing}See every weight file and its state with: "
            f"{cli_command()} weights list --models-dir {shlex.quote(str(models_dir))}")


def fetch(entry_ids: Iterable[str], models_dir: Union[str, os.PathLike], manifest: ManifestSource = None,
          accept_licences: Iterable[str] = (), base_url: Optional[str] = None,
          progress_factory: Optional[Callable[[dict], Callable[[int, int], None]]] = None,
          trust_on_first_use: bool = False) -> list[str]:
    """Download the given entries into ``models_dir``; returns one line per entry saying what happened.

    Refuses (``WeightsError``) entries that are not downloadable or whose licences were neither accepted now nor
    recorded earlier.  An existing file that passes its checks is never touched; one that fails them is left alone and
    reported.  ``base_url`` replaces each entry's url by ``<base_url>/<filename>``.  ``progress_factory(entry)``
    may return a ``progress(done_bytes, total_bytes)`` callback.

    An entry whose sha256 is neither in the manifest nor in the models dir's lock file is only downloaded with
    ``trust_on_first_use``; its size and sha256 are then recorded in the lock file and checked from then on.
    """
    entries = [pinned(get_entry(entry_id, manifest), models_dir) for entry_id in entry_ids]
    _refuse_manual(entries)
    _refuse_unpinned(entries, Path(models_dir), trust_on_first_use)
    accepted = accepted_licences(models_dir) | set(accept_licences)
    _refuse_without_consent(entries, accepted)
    record_licences(models_dir, {name for entry in entries for name in entry["consent"]})
    return [_fetch_one(entry, Path(models_dir), base_url, progress_factory) for entry in entries]


def _refuse_unpinned(entries: Sequence[dict], models_dir: Path, trust: bool) -> None:
    unpinned = [entry["id"] for entry in entries if entry["download"] and entry["sha256"] is None
                and not (models_dir / entry["target"] / entry["filename"]).is_file()]
    if unpinned and not trust:
        raise WeightsError(f"no published sha256 for {', '.join(unpinned)}, so a substituted or damaged download "
                           "could not be detected. To accept the file as the server sends it now, run again with "
                           f"--trust-on-first-use: its size and sha256 are printed and recorded in "
                           f"{models_dir / LOCK_FILE}, and checked from then on.")


def _refuse_manual(entries: Sequence[dict]) -> None:
    manual = [entry for entry in entries if not entry["download"]]
    if manual:
        raise WeightsError("not downloadable by this tool:\n" + "\n".join(
            f"  {entry['id']} ({entry['filename']} -> {entry['target']}): {entry['instructions']}" for entry in manual))


def _refuse_without_consent(entries: Sequence[dict], accepted: set[str]) -> None:
    lacking = {entry["id"]: missing_consent(entry, accepted) for entry in entries}
    lacking = {entry_id: names for entry_id, names in lacking.items() if names}
    if lacking:
        names = sorted({name for names in lacking.values() for name in names})
        raise WeightsError("licence not accepted for " + ", ".join(
            f"{entry_id} ({', '.join(names_)})" for entry_id, names_ in lacking.items())
            + ". Read the licence, then run again with " + " ".join(f"--accept-licence {name}" for name in names))


def _fetch_one(entry: dict, models_dir: Path, base_url: Optional[str], progress_factory) -> str:
    final_path = models_dir / entry["target"] / entry["filename"]
    if final_path.is_file():
        state = check_file(entry, final_path, sha256_of(final_path) if entry["sha256"] else None)
        if state in (PRESENT, VERIFIED):
            return f"{entry['id']}: already present at {final_path} ({state})"
        raise WeightsError(f"{entry['id']}: {final_path} exists but is {state}; it was left untouched. Move or delete "
                           "it, then fetch again.")
    url = f"{base_url.rstrip('/')}/{entry['filename']}" if base_url else entry["url"]
    progress = progress_factory(entry) if progress_factory else None
    first_use = entry["sha256"] is None
    try:
        download_file(url, final_path, entry["size"], entry["sha256"], progress, allowed_hosts=allowed_hosts(entry, url),
                      require_length=first_use and entry["size"] is None)
    except DownloadError as error:
        raise DownloadError(f"{entry['id']}: {error}") from error
    if first_use:
        digest, size = sha256_of(final_path), final_path.stat().st_size
        lock = record_lock(models_dir, entry, size, digest)
        return (f"{entry['id']}: downloaded to {final_path} (trusted on first use: {size} bytes, sha256 {digest}, "
                f"recorded in {lock})")
    return f"{entry['id']}: downloaded to {final_path}"


class _StderrProgress:
    """Progress lines on stderr, at most one per percent (or per 16 MiB when the size is unknown)."""

    def __init__(self, entry: dict):
        self.label = entry["id"]
        self.last_step = -1

    def __call__(self, done: int, total: int) -> None:
        step = done * 100 // total if total else done >> 24
        if step == self.last_step:
            return
        self.last_step = step
        size = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB ({step}%)" if total else f"{done / 1e6:.1f} MB"
        end = "\n" if total and done >= total else ""
        print(f"\r[weights] {self.label}: {size}", end=end, file=sys.stderr, flush=True)


def _table(rows: list[Sequence[str]]) -> str:
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in rows)


def list_rows(models_dir: Union[str, os.PathLike], manifest: ManifestSource = None) -> list[tuple[str, ...]]:
    """(id, state, how to get it, path, licence) for each entry in manifest order; sizes checked, nothing hashed."""
    return [(entry_id, file_state(entry_id, models_dir, manifest), "fetch" if entry["download"] else "manual",
             str(expected_path(entry_id, models_dir, manifest)), entry["licence"])
            for entry_id, entry in load_manifest(manifest).items()]


def verify_rows(models_dir: Union[str, os.PathLike], manifest: ManifestSource = None,
                entry_ids: Sequence[str] = ()) -> list[tuple[str, ...]]:
    """(id, state, path, sha256 or "-") for the given entries (default all), hashing every present file once."""
    rows = []
    for entry_id in entry_ids or load_manifest(manifest):
        entry, path = pinned(get_entry(entry_id, manifest), models_dir), expected_path(entry_id, models_dir, manifest)
        if path.is_file():
            digest = sha256_of(path)
            rows.append((entry_id, check_file(entry, path, digest), str(path), digest))
        else:
            rows.append((entry_id, file_state(entry_id, models_dir, manifest), str(path), "-"))
    return rows


def _cmd_list(args) -> int:
    print(_table([("ID", "STATE", "GET", "PATH", "LICENCE"), *list_rows(args.models_dir, args.manifest)]))
    return 0


def _cmd_verify(args) -> int:
    rows = verify_rows(args.models_dir, args.manifest, args.ids)
    print(_table([("ID", "STATE", "PATH", "SHA256"), *rows]))
    return 1 if any(row[1] in (WRONG_SIZE, BAD_CHECKSUM) for row in rows) else 0


def _cmd_fetch(args) -> int:
    entries = load_manifest(args.manifest)
    if args.all == bool(args.ids):
        raise WeightsError("name the ids to fetch or pass --all (not both)")
    ids = [entry_id for entry_id, entry in entries.items() if entry["download"]] if args.all else args.ids
    for line in fetch(ids, args.models_dir, manifest=args.manifest, accept_licences=args.accept_licence,
                      base_url=args.base_url, progress_factory=_StderrProgress,
                      trust_on_first_use=args.trust_on_first_use):
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``weights`` command line."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models-dir", type=Path, help="ComfyUI's models folder (default: found from the pack's "
                        "location <ComfyUI>/custom_nodes/<pack>)")
    common.add_argument("--manifest", type=Path, default=None, help="another manifest.json (tests, mirrors)")
    parser = argparse.ArgumentParser(prog=f"{cli_command()} weights",
                                     description="List, download and verify the pack's external weight files.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", parents=[common], help="show every file, its state, path and licence")
    verify = commands.add_parser("verify", parents=[common], help="re-hash present files against the manifest")
    verify.add_argument("ids", nargs="*", help="entry ids (default: all)")
    fetch_parser = commands.add_parser("fetch", parents=[common], help="download files (resumable, checked)")
    fetch_parser.add_argument("ids", nargs="*", help="entry ids, see 'list'")
    fetch_parser.add_argument("--all", action="store_true", help="every downloadable entry")
    fetch_parser.add_argument("--accept-licence", action="append", default=[], metavar="NAME",
                              help="accept a licence an entry requires, e.g. cc-by-nc-4.0 (recorded for next time)")
    fetch_parser.add_argument("--base-url", help="fetch <URL>/<filename> instead of each entry's url")
    fetch_parser.add_argument("--trust-on-first-use", action="store_true",
                              help="accept files whose sha256 is not published: the download's size and sha256 are "
                                   f"printed and recorded in <models>/{LOCK_FILE}, and checked from then on")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Run the ``weights`` command; returns the exit status (0 ok, 1 refused or failed, 2 bad usage)."""
    args = build_parser().parse_args(argv)
    args.models_dir = args.models_dir or find_models_dir()
    if args.models_dir is None:
        print("error: ComfyUI's models folder was not found above the pack (expected <ComfyUI>/custom_nodes/"
              f"{PACK_DIR.name}); pass --models-dir /path/to/ComfyUI/models", file=sys.stderr)
        return 2
    handlers = {"list": _cmd_list, "verify": _cmd_verify, "fetch": _cmd_fetch}
    try:
        return handlers[args.command](args)
    except (WeightsError, KeyError, ValueError) as error:
        print(f"error: {error.args[0] if isinstance(error, KeyError) else error}", file=sys.stderr)
        return 1
