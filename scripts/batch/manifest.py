"""The batch manifest: every finished chunk and video with its size and SHA-256, rewritten atomically."""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

MANIFEST_NAME = "batch_manifest.json"
VERSION = 1


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: Path, root: Path) -> dict:
    return {"file": str(path.relative_to(root)), "size": path.stat().st_size, "sha256": sha256_file(path)}


def verified(record: dict | None, root: Path) -> bool:
    """The recorded file is there with its recorded size and hash."""
    if not record:
        return False
    path = root / record["file"]
    return path.is_file() and path.stat().st_size == record["size"] and sha256_file(path) == record["sha256"]


class Manifest:
    """``{"version", "videos": {key: {"input", "audio", "frames", "chunks": {index: record}, "output", "report"}}}``"""

    def __init__(self, root: Path, data: dict | None = None):
        self.root = Path(root)
        self.path = self.root / MANIFEST_NAME
        self.data = data or {"version": VERSION, "videos": {}}

    @classmethod
    def open(cls, root: Path, resume: bool) -> "Manifest":
        path = Path(root) / MANIFEST_NAME
        if not path.exists():
            return cls(root)
        if not resume:
            raise SystemExit(f"{root} already holds a batch ({MANIFEST_NAME}): pass --resume to continue it, or "
                             f"choose another --output-dir")
        data = json.loads(path.read_text())
        if data.get("version") != VERSION:
            raise SystemExit(f"{path}: manifest version {data.get('version')} is not {VERSION}")
        return cls(root, data)

    def video(self, key: str) -> dict:
        return self.data["videos"].setdefault(key, {"chunks": {}})

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        temp = self.root / f".{MANIFEST_NAME}.{uuid.uuid4().hex}.part"
        temp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        os.replace(temp, self.path)
