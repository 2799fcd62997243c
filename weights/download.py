"""Resumable HTTP download into ``<file>.part``, checked for size and sha256 before an atomic rename into place."""
from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Iterable, Optional

from .manifest import WeightsError, part_path, sha256_of

USER_AGENT = "talkinghead-weights/1 (python urllib)"
CHUNK_BYTES = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")

Progress = Optional[Callable[[int, int], None]]


class DownloadError(WeightsError):
    """A download that did not produce a checked file (the message says what to do)."""


def download_file(url: str, final_path: Path, size: Optional[int] = None, sha256: Optional[str] = None,
                  progress: Progress = None, timeout: float = 60.0, allowed_hosts: Optional[Iterable[str]] = None,
                  require_length: bool = False) -> Path:
    """Fetch ``url`` to ``final_path`` through ``final_path.part``, resuming an existing ``.part`` with HTTP Range.

    The size (``size`` or the server's total) and ``sha256`` are checked before ``os.replace`` moves the file into
    place, so ``final_path`` never holds an unchecked file.  An interrupted transfer keeps the ``.part`` for the next
    run; a checksum failure deletes it.  ``progress(done_bytes, total_bytes_or_0)`` is called as bytes arrive.
    Redirects are followed only to ``allowed_hosts`` (default: the url's own host).  ``require_length``: with no
    ``size`` known, refuse a response that does not declare its length (an early close could not be told apart).
    """
    final_path.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(final_path)
    offset = part.stat().st_size if part.is_file() else 0
    if size is not None and offset > size:
        part.unlink()  # cannot be a prefix of the expected file
        offset = 0
    hosts = frozenset(h.lower() for h in (allowed_hosts or [urllib.parse.urlsplit(url).hostname or ""]))
    remote_total = size if offset == size else _fetch_into_part(url, part, offset, size, progress, timeout, hosts)
    if size is None and remote_total is None and require_length:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: the server did not declare the file's length and no size or sha256 is known, so "
                            "a transfer that ended early could not be detected; nothing was installed")
    _check_part(part, size if size is not None else remote_total, sha256)
    os.replace(part, final_path)
    return final_path


def _fetch_into_part(url: str, part: Path, offset: int, size: Optional[int], progress: Progress,
                     timeout: float, hosts: frozenset) -> Optional[int]:
    """Write the remote bytes from ``offset`` on into ``part``; return the remote size when the server states it.

    A server whose file is not ``size`` bytes is serving something else: fail before transferring the body.
    """
    try:
        response = _open(url, offset, timeout, hosts)
    except DownloadError:
        raise
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the .part is at least as long as the remote file: start again
            part.unlink()
            return _fetch_into_part(url, part, 0, size, progress, timeout, hosts)
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        raise DownloadError(f"{url}: {error}; run the same command again to resume") from error
    with response:
        start, remote_total = _response_range(response, offset)
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        if remote_total is None and expected is not None:
            remote_total = start + expected
        if size is not None and remote_total not in (None, size):
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: the server's file is {remote_total} bytes but the manifest expects {size}; "
                                "nothing was kept (the source may have changed)")
        try:
            received = _copy(response, part, start, remote_total, progress)
        except (OSError, http.client.HTTPException) as error:
            raise DownloadError(f"{url}: transfer interrupted ({error}); the partial file {part} is kept: run the same "
                                "command again to resume") from error
    if expected is not None and received < expected:
        raise DownloadError(f"{url}: connection closed after {start + received} of {remote_total} bytes; the partial "
                            f"file {part} is kept: run the same command again to resume")
    return remote_total


class _ListedHostsRedirect(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a host listed for the entry (a mirror answering with another host's file is
    refused instead of installed)."""

    def __init__(self, hosts: frozenset):
        self.hosts = hosts

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        target = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, newurl))
        if (target.hostname or "").lower() not in self.hosts or target.scheme not in ("http", "https"):
            raise DownloadError(f"{req.full_url} redirects to {target.scheme}://{target.hostname}, which is not a host "
                                f"listed for this file ({', '.join(sorted(self.hosts))}); nothing was downloaded")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open(url: str, offset: int, timeout: float, hosts: frozenset):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    opener = urllib.request.build_opener(_ListedHostsRedirect(hosts))
    return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)


def _response_range(response, offset: int) -> tuple[int, Optional[int]]:
    """Start offset of the body and the remote total size, from the status and Content-Range."""
    if response.status != 206:
        return 0, None  # a full body: the server ignored the Range request, so the download restarts
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if not match or int(match.group(1)) != offset:
        raise DownloadError(f"server answered Range bytes={offset}- with Content-Range "
                            f"{response.headers.get('Content-Range')!r}")
    return offset, None if match.group(3) == "*" else int(match.group(3))


def _copy(response, part: Path, start: int, total: Optional[int], progress: Progress) -> int:
    received = 0
    with open(part, "r+b" if start else "wb") as handle:
        handle.seek(start)
        handle.truncate()
        while chunk := response.read(CHUNK_BYTES):
            handle.write(chunk)
            received += len(chunk)
            if progress is not None:
                progress(start + received, total or 0)
    return received


def _check_part(part: Path, size: Optional[int], sha256: Optional[str]) -> None:
    actual = part.stat().st_size
    if size is not None and actual < size:
        raise DownloadError(f"{part} holds {actual} of {size} bytes; run the same command again to resume")
    if size is not None and actual > size:
        part.unlink()
        raise DownloadError(f"download was {actual} bytes, expected {size}; the partial file was deleted")
    if sha256 is not None:
        digest = sha256_of(part)
        if digest != sha256:
            part.unlink()
            raise DownloadError(f"sha256 mismatch: got {digest}, expected {sha256}; the download was deleted "
                                "(the source may have changed or the transfer was corrupted)")
