"""Tracked GAGAvatar drivers in the official layout.

A driver directory holds ``smoothed.pkl`` (video) or ``optim.pkl`` (image set) — a pickled dict
``key -> {bbox (4,), shapecode (300,), expcode (100,), posecode (6,) = [0,0,0, jaw], eyecode (6,),
transform_matrix (3,4)}`` of float32 arrays — and ``img_lmdb/``, an LMDB mapping the same keys
(``'{video}_{frame}'``) to JPEG/PNG bytes of 512×512 RGB crops.

Differences from the reference loader, on purpose:

- Frames are ordered by ``int(key.split('_')[-1])`` for videos *and* image sets.  The reference shuffles image sets
  and keeps 60 frames, seeded by wall-clock time; here the order is deterministic (natural key order, keys
  without a numeric suffix last, by name) and ``max_frames`` keeps the first N.
- ``fps`` is never assumed (the reference hard-codes 25): it comes from the caller or from ``meta.json``, which
  :func:`write_tracked` adds beside the official files (the official pickles carry no frame rate).
- Pickles are read with a numpy-only unpickler, so a driver file cannot run code.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import cv2
import lmdb
import numpy as np

from ...models.flame import load_legacy_pickle, to_numpy

VIDEO_PICKLE, IMAGE_SET_PICKLE, LMDB_DIR, META_FILE = "smoothed.pkl", "optim.pkl", "img_lmdb", "meta.json"
CODE_SHAPES = {"shapecode": (300,), "expcode": (100,), "posecode": (6,), "eyecode": (6,),
               "transform_matrix": (3, 4), "bbox": (4,)}
REQUIRED_FOR_ANIMATION = ("expcode", "posecode", "eyecode", "transform_matrix")


class LmdbFrames:
    """Lazy view of a driver's ``img_lmdb`` crops in driver order: ``frames[i]`` -> uint8 [H,W,3] RGB,
    ``frames[a:b]`` or ``frames[[i, j]]`` -> [n,H,W,3]; ``np.asarray(frames)`` loads them all."""

    def __init__(self, lmdb_path, keys):
        self.lmdb_path, self.keys = str(lmdb_path), list(keys)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self._read([self.keys[index]])[0]
        selected = np.arange(len(self.keys))[index]
        return self._read([self.keys[i] for i in selected])

    def __array__(self, dtype=None, copy=None):
        frames = self[:]
        return frames if dtype is None else frames.astype(dtype)

    def _read(self, keys) -> np.ndarray:
        env = lmdb.open(self.lmdb_path, readonly=True, lock=False, readahead=False)
        try:
            with env.begin() as txn:
                payloads = [txn.get(key.encode()) for key in keys]
        finally:
            env.close()
        missing = [key for key, payload in zip(keys, payloads) if payload is None]
        if missing:
            raise ValueError(f"{self.lmdb_path} has no image for keys {missing[:5]}: the LMDB does not match the pickle")
        if not payloads:
            return np.zeros((0, 512, 512, 3), np.uint8)
        return np.stack([_decode_image(payload, key) for key, payload in zip(keys, payloads)])


def _decode_image(payload: bytes, key: str) -> np.ndarray:
    if payload[:6] == b"\x93NUMPY":  # the official LMDB engine can also store np.save payloads
        array = np.load(io.BytesIO(payload), allow_pickle=False)
        return _to_uint8_hwc(array)
    bgr = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"driver image '{key}' is neither JPEG nor PNG")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _to_uint8_hwc(image) -> np.ndarray:
    image = to_numpy(image)
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = np.moveaxis(image, 0, -1)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.dtype != np.uint8:
        scale = 255.0 if float(np.max(image, initial=0)) <= 1.0 + 1e-6 else 1.0
        image = np.clip(np.asarray(image, np.float64) * scale + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


@dataclass(eq=False)
class TrackedDriver:
    """Per-frame FLAME/camera codes of a driver, in frame order, as numpy arrays.

    ``images``: uint8 [T,512,512,3] crops, either loaded or a lazy :class:`LmdbFrames`; ``None`` when the driver has
    none (images are for display only — animation uses the codes).  ``fps``: ``None`` when unknown.
    """

    keys: list
    shapecode: np.ndarray
    expcode: np.ndarray
    posecode: np.ndarray
    eyecode: np.ndarray
    transform_matrix: np.ndarray
    bbox: np.ndarray
    images: object = None
    fps: float | None = None
    image_set: bool = False
    source_path: str | None = field(default=None, compare=False)

    def __len__(self) -> int:
        return len(self.keys)

    def load_images(self) -> np.ndarray | None:
        """All crops as one uint8 [T,H,W,3] array (reads the LMDB if still lazy)."""
        return None if self.images is None else np.asarray(self.images)

    def as_dict(self) -> dict:
        """Plain dict of the arrays (the form other pipeline functions exchange)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _frame_sort_key(key: str):
    suffix = key.rsplit("_", 1)[-1]
    return (0, int(suffix), key) if suffix.lstrip("-").isdigit() else (1, 0, key)


def _stack_codes(name: str, values: list, count: int) -> np.ndarray:
    shape = CODE_SHAPES[name]
    array = np.asarray([to_numpy(v) for v in values], dtype=np.float32) if values else np.zeros((0, *shape), np.float32)
    if array.shape != (count, *shape):
        raise ValueError(f"driver field '{name}' must be [T,{','.join(map(str, shape))}], got {array.shape}")
    return array


def as_driver(driver) -> TrackedDriver:
    """A :class:`TrackedDriver` from itself or from a dict of arrays with the same field names.

    ``expcode``, ``posecode``, ``eyecode`` and ``transform_matrix`` are required; ``shapecode`` and ``bbox`` default
    to zeros, ``keys`` to ``frame_{i}``.
    """
    if isinstance(driver, TrackedDriver):
        return driver
    if not isinstance(driver, Mapping):
        raise ValueError(f"driver must be a TrackedDriver or a dict of arrays, got {type(driver).__name__}")
    missing = [name for name in REQUIRED_FOR_ANIMATION if name not in driver]
    if missing:
        raise ValueError(f"driver dict lacks {missing}; it needs {list(REQUIRED_FOR_ANIMATION)} (+ optional "
                         "shapecode, bbox, keys, images, fps)")
    count = len(to_numpy(driver["expcode"]))
    codes = {}
    for name, shape in CODE_SHAPES.items():
        value = driver.get(name)
        codes[name] = np.zeros((count, *shape), np.float32) if value is None else _stack_codes(name, list(value), count)
    keys = driver.get("keys")
    keys = [f"frame_{i}" for i in range(count)] if keys is None else [str(k) for k in keys]
    if len(keys) != count or len(set(keys)) != count:
        raise ValueError(f"driver needs {count} distinct keys (one per frame), got {len(set(keys))} of {len(keys)}")
    images = driver.get("images")
    if images is not None and len(images) != count:
        raise ValueError(f"driver has {len(images)} images for {count} frames")
    fps = driver.get("fps")
    return TrackedDriver(keys=keys, images=images, fps=None if fps is None else float(fps),
                         image_set=bool(driver.get("image_set", False)), **codes)


def _driver_pickle(path: Path) -> tuple[Path, bool]:
    if path.is_file():
        return path, path.name == IMAGE_SET_PICKLE
    for name, image_set in ((VIDEO_PICKLE, False), (IMAGE_SET_PICKLE, True)):
        if (path / name).is_file():
            return path / name, image_set
    raise ValueError(f"{path} is not a tracked driver: expected {VIDEO_PICKLE} (video) or {IMAGE_SET_PICKLE} "
                     "(image set) from GAGAvatar_track")


def read_tracked(path, fps: float | None = None, max_frames: int | None = None,
                 load_images: bool = False) -> TrackedDriver:
    """Read a tracked driver directory (or its pickle) into a :class:`TrackedDriver`, frames in order.

    ``fps``: overrides the frame rate stored in ``meta.json`` (``None`` if neither exists).  ``max_frames``: keep the
    first N frames.  Images are lazy unless ``load_images``; without ``img_lmdb/`` they come from the records' own
    ``image`` fields (``track_image`` output) when present.
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 (or None for all frames), got {max_frames}")
    pickle_path, image_set = _driver_pickle(Path(path))
    root = pickle_path.parent
    records = load_legacy_pickle(pickle_path)
    if not isinstance(records, Mapping) or not records:
        raise ValueError(f"{pickle_path}: expected a non-empty dict of per-frame records")
    records = {str(key): record for key, record in records.items()}
    keys = sorted(records, key=_frame_sort_key)[:max_frames]
    for key in keys:
        if not isinstance(records[key], Mapping):
            raise ValueError(f"{pickle_path}: frame '{key}' is a {type(records[key]).__name__}, not a dict of arrays")
        absent = [name for name in REQUIRED_FOR_ANIMATION if name not in records[key]]
        if absent:
            raise ValueError(f"{pickle_path}: frame '{key}' lacks {absent}")
    codes = {name: _stack_codes(name, [records[k].get(name, np.zeros(shape, np.float32)) for k in keys], len(keys))
             for name, shape in CODE_SHAPES.items()}
    for name, values in codes.items():  # a NaN code would silently blank every frame it drives
        bad = np.flatnonzero(~np.isfinite(values).reshape(len(keys), -1).all(axis=1))
        if bad.size:
            raise ValueError(f"{pickle_path}: field '{name}' holds NaN/inf in {bad.size} frame(s), first "
                             f"'{keys[bad[0]]}'; re-track the video or fix the file")
    images = None
    if (root / LMDB_DIR).is_dir():
        images = LmdbFrames(root / LMDB_DIR, keys)
    elif all("image" in records[k] for k in keys):
        images = np.stack([_to_uint8_hwc(records[k]["image"]) for k in keys])
    if load_images and images is not None:
        images = np.asarray(images)
    if fps is None and (root / META_FILE).is_file():
        fps = _meta_fps(root / META_FILE)
    return TrackedDriver(keys=keys, images=images, fps=None if fps is None else float(fps), image_set=image_set,
                         source_path=str(root), **codes)


def _meta_fps(path: Path):
    """The ``fps`` stored in ``meta.json`` (None when absent), refused when it is not a frame rate in 1..240."""
    from ..validation import check_fps

    if path.stat().st_size > 1 << 20:
        raise ValueError(f"{path} is larger than 1 MiB; a driver's meta.json only holds its frame rate")
    try:
        meta = json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); fix or delete it and set the fps input") from None
    fps = meta.get("fps") if isinstance(meta, dict) else None
    if fps is None:
        return None
    return check_fps(fps, str(path), "fps (fix the file, or set the fps input to override it)")


def _encode_image(image: np.ndarray, image_format: str) -> bytes:
    bgr = cv2.cvtColor(_to_uint8_hwc(image), cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if image_format == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if image_format == "jpeg" else ".png", bgr, params)
    if not ok:
        raise ValueError(f"could not encode a driver image as {image_format}")
    return encoded.tobytes()


def _write_lmdb(lmdb_path: Path, keys: list, images, image_format: str) -> None:
    # Generous for 512² PNGs; LMDB may preallocate the whole map on some platforms, so no terabyte default.
    env = lmdb.open(str(lmdb_path), map_size=(64 + 2 * len(keys)) << 20)
    try:
        for start in range(0, len(keys), 64):
            with env.begin(write=True) as txn:
                chunk = np.asarray(images[start:start + 64])
                for key, image in zip(keys[start:start + 64], chunk):
                    txn.put(key.encode(), _encode_image(image, image_format))
    finally:
        env.close()


def _swap_into_place(tmp: Path, path: Path) -> None:
    if not path.exists():
        os.replace(tmp, path)
        return
    if not path.is_dir():
        raise ValueError(f"cannot write a driver to {path}: it exists and is not a directory")
    old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def write_tracked(path, record, image_format: str = "jpeg") -> Path:
    """Write a driver (``TrackedDriver`` or dict of arrays) in the official layout; returns the directory.

    ``smoothed.pkl`` (or ``optim.pkl`` for an image set) with float32 records, ``img_lmdb/`` when the driver has
    images (``image_format`` 'jpeg' quality 95 like the tracker, or lossless 'png'), and ``meta.json`` with the fps.
    Everything is written to a temporary sibling directory first and then renamed over ``path``.
    """
    if image_format not in ("jpeg", "png"):
        raise ValueError(f"image_format must be 'jpeg' or 'png', got {image_format!r}")
    driver = as_driver(record)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        records = {key: {name: np.asarray(getattr(driver, name)[i], np.float32) for name in CODE_SHAPES}
                   for i, key in enumerate(driver.keys)}
        with open(tmp / (IMAGE_SET_PICKLE if driver.image_set else VIDEO_PICKLE), "wb") as handle:
            pickle.dump(records, handle, protocol=4)
        if driver.images is not None:
            _write_lmdb(tmp / LMDB_DIR, driver.keys, driver.images, image_format)
        (tmp / META_FILE).write_text(json.dumps({"fps": driver.fps, "frames": len(driver)}))
        _swap_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
