"""Realistic, small test media built from real material that ships in installed packages.

Import from tests as ``from media import talking_clip, speech_16k, ...`` (tests/ is on sys.path).

Faces: two public-domain photos, ``skimage.data.astronaut()`` (Eileen Collins, face about 95 px) and matplotlib's
``grace_hopper.jpg`` (face about 190 px), warped with small per-frame head motion and a jaw-opening warp, so face
detectors and landmarkers still work on every frame.  Speech: the LibriVox clips of Debian ``pocketsphinx-testdata``
(real 16 kHz speech) and espeak-ng (synthetic).  Helpers that need a Debian package call ``pytest.skip`` when it is
missing.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from talkinghead.scripts import sample_media

SAMPLE_RATE = sample_media.SAMPLE_RATE
LIBRIVOX_DIR = sample_media.LIBRIVOX_DIR

# Face geometry in the original photos, measured once with MediaPipe 0.10.21 (BlazeFace box x1, y1, x2, y2 and
# FaceMesh inner-lip midpoint and chin, points 13/14 and 152).
_FACES = {
    "astronaut": {"box": (177.6, 82.9, 272.9, 178.2), "mouth": (223.3, 146.2), "chin": (221.3, 175.5)},
    "grace_hopper": {"box": (171.4, 146.9, 365.8, 341.4), "mouth": (268.6, 277.0), "chin": (271.6, 333.1)},
}


class Clip(NamedTuple):
    """A synthetic clip: frames uint8 [N,H,W,3] RGB, fps, expected face boxes float32 [N,4] (x1,y1,x2,y2; NaN
    where a frame has no face) and the jaw opening per frame in 0..1."""
    frames: np.ndarray
    fps: float
    face_boxes: np.ndarray
    mouth_open: np.ndarray


@functools.lru_cache(maxsize=None)
def _photo(face: str) -> np.ndarray:
    if face == "astronaut":
        from skimage import data

        return data.astronaut()
    if face == "grace_hopper":
        import matplotlib.cbook
        import matplotlib.image

        return matplotlib.image.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    raise ValueError(f"face must be one of {sorted(_FACES)}, got {face!r}")


def photo(face: str = "astronaut") -> np.ndarray:
    """The full photo, uint8 [H,W,3] RGB (a copy)."""
    return _photo(face).copy()


def face_box(face: str = "astronaut") -> tuple[float, float, float, float]:
    """The face box (x1, y1, x2, y2) in the full photo."""
    return _FACES[face]["box"]


def _open_jaw(image: np.ndarray, face: str, amount_px: float) -> np.ndarray:
    """Move the lower lip and chin down by up to ``amount_px`` (a smooth local warp), like a jaw opening."""
    import cv2

    if amount_px <= 0:
        return image
    geometry = _FACES[face]
    (mx, my), (_, chin_y) = geometry["mouth"], geometry["chin"]
    width = (geometry["box"][2] - geometry["box"][0]) * 0.35
    ys, xs = np.mgrid[0:image.shape[0], 0:image.shape[1]].astype(np.float32)
    across = np.exp(-0.5 * ((xs - mx) / width) ** 2)
    # 0 above the lip line, 1 from the lower lip to the chin, fading out below the chin.
    down = np.clip((ys - my) / 3.0, 0, 1) * np.clip(1 - (ys - chin_y) / (chin_y - my), 0, 1)
    map_y = ys - amount_px * across * down
    return cv2.remap(image, xs, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _base_affine(face: str, size: tuple[int, int], face_fraction: float) -> np.ndarray:
    """Scale and shift the photo so the face is ``face_fraction`` of the frame's short side, centred."""
    x1, y1, x2, y2 = _FACES[face]["box"]
    height, width = size
    scale = face_fraction * min(height, width) / (x2 - x1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return np.array([[scale, 0, width / 2 - scale * cx], [0, scale, height / 2 - scale * cy]], np.float64)


def _jitter(rng: np.random.Generator, size: tuple[int, int], motion: float) -> np.ndarray:
    """Small head motion about the frame centre: +-motion px shift, +-motion/2 degrees, +-motion % scale."""
    angle = rng.uniform(-0.5, 0.5) * motion
    scale = 1 + rng.uniform(-0.01, 0.01) * motion
    shift = rng.uniform(-1, 1, 2) * motion
    import cv2

    matrix = cv2.getRotationMatrix2D((size[1] / 2, size[0] / 2), angle, scale)
    matrix[:, 2] += shift
    return matrix


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    full = lambda m: np.vstack([m, [0, 0, 1]])  # noqa: E731
    return (full(outer) @ full(inner))[:2]


def _transform_box(matrix: np.ndarray, box) -> np.ndarray:
    x1, y1, x2, y2 = box
    corners = np.array([[x1, y1, 1], [x2, y1, 1], [x1, y2, 1], [x2, y2, 1]]) @ matrix.T
    return np.array([*corners.min(0), *corners.max(0)], np.float32)


def talking_clip(face: str = "astronaut", frames: int = 12, size: tuple[int, int] = (192, 192), fps: float = 25.0,
                 motion: float = 2.0, mouth_px: float = 6.0, face_fraction: float = 0.45, seed: int = 0,
                 openness=None) -> Clip:
    """A short "talking head" clip from a real photo.

    Each frame is the photo with the jaw opened by ``mouth_px * open_k`` photo pixels (``open_k`` follows a 0..1
    cosine with a period of 8 frames, or the given ``openness`` series, one value per frame) and a random small
    affine head motion of about ``motion`` pixels.
    """
    import cv2

    rng = np.random.default_rng(seed)
    height, width = size
    base = _base_affine(face, size, face_fraction)
    if openness is None:
        openness = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frames) / 8.0)
    openness = np.asarray(openness, dtype=np.float32)
    if openness.shape != (frames,):
        raise ValueError(f"openness: expected {frames} values, got shape {openness.shape}")
    images, boxes = [], []
    for index in range(frames):
        matrix = _compose(_jitter(rng, size, motion), base)
        source = _open_jaw(_photo(face), face, mouth_px * float(openness[index]))
        images.append(cv2.warpAffine(source, matrix, (width, height), flags=cv2.INTER_AREA,
                                     borderMode=cv2.BORDER_REFLECT))
        boxes.append(_transform_box(matrix, _FACES[face]["box"]))
    return Clip(np.stack(images), float(fps), np.stack(boxes), openness)


def clip_with_missing_faces(face: str = "astronaut", frames: int = 12, missing=(3, 7), size=(192, 192),
                            fps: float = 25.0, seed: int = 0) -> Clip:
    """Like :func:`talking_clip`, but the frames listed in ``missing`` hold no face: alternately a flat grey frame
    and uniform noise.  Their ``face_boxes`` rows are NaN."""
    clip = talking_clip(face, frames, size, fps, seed=seed)
    rng = np.random.default_rng(seed + 1)
    images, boxes = clip.frames.copy(), clip.face_boxes.copy()
    for order, index in enumerate(missing):
        if order % 2 == 0:
            images[index] = 128
        else:
            images[index] = rng.integers(0, 256, images[index].shape, dtype=np.uint8)
        boxes[index] = np.nan
    return clip._replace(frames=images, face_boxes=boxes)


# ----------------------------------------------------------------------------------------------------------------
# audio


def librivox_files() -> list[Path]:
    """The LibriVox 16 kHz speech clips of pocketsphinx-testdata, or ``pytest.skip`` when it is not installed."""
    files = sample_media.librivox_files()
    if not files:
        pytest.skip(f"real speech needs Debian pocketsphinx-testdata ({LIBRIVOX_DIR} is missing): "
                    "apt-get install pocketsphinx-testdata")
    return files


def speech_16k(seconds: float | None = None, start_clip: int = 0) -> np.ndarray:
    """Real read speech (LibriVox, public domain), float32 mono 16 kHz.

    The five clips (24.7 s in total) are joined in order from ``start_clip``; ``seconds`` trims (or, past the end,
    repeats) to that length.  Skips the test when pocketsphinx-testdata is absent.
    """
    librivox_files()  # skips when absent
    speech = sample_media.librivox_speech(start_clip)
    if seconds is not None:
        length = int(round(seconds * SAMPLE_RATE))
        speech = np.resize(speech, length) if length > len(speech) else speech[:length]
    return speech.astype(np.float32)


def espeak_speech(text: str = "The quick brown fox jumps over the lazy dog.", voice: str = "en-us",
                  words_per_minute: int = 150) -> np.ndarray:
    """Synthetic speech from espeak-ng, float32 mono 16 kHz; skips the test when espeak-ng is not installed."""
    speech = sample_media.espeak_speech(text, voice, words_per_minute)
    if speech is None:
        pytest.skip("synthetic speech needs espeak-ng: apt-get install espeak-ng")
    return speech


def tone(frequency: float = 440.0, seconds: float = 1.0, amplitude: float = 0.5,
         sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A sine, float32 mono."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def white_noise(seconds: float, rms: float = 0.05, seed: int = 0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Gaussian white noise with the given RMS, float32 mono."""
    rng = np.random.default_rng(seed)
    return (rms * rng.standard_normal(int(round(seconds * sample_rate)))).astype(np.float32)


def pink_noise(seconds: float, rms: float = 0.05, seed: int = 0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Gaussian noise with a 1/f power spectrum (more low-frequency energy, like room and fan noise)."""
    rng = np.random.default_rng(seed)
    length = int(round(seconds * sample_rate))
    spectrum = rng.standard_normal(length // 2 + 1) + 1j * rng.standard_normal(length // 2 + 1)
    frequencies = np.fft.rfftfreq(length, 1 / sample_rate)
    spectrum /= np.sqrt(np.maximum(frequencies, 20.0))
    noise = np.fft.irfft(spectrum, length)
    return (noise * rms / noise.std()).astype(np.float32)


def add_noise(clean: np.ndarray, snr_db: float, kind: str = "white", seed: int = 0,
              sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """``clean`` plus noise scaled to the given SNR over the whole clip; returns ``(noisy, noise)``."""
    make = {"white": white_noise, "pink": pink_noise}[kind]
    noise = make(len(clean) / sample_rate, 1.0, seed, sample_rate)[: len(clean)]
    noise *= np.sqrt(np.mean(clean.astype(np.float64) ** 2) / 10 ** (snr_db / 10)) / noise.std()
    return (clean + noise).astype(np.float32), noise.astype(np.float32)


def silence_speech_silence(speech: np.ndarray, lead_s: float = 1.0, tail_s: float = 1.0,
                           sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, tuple[float, float]]:
    """Digital silence, then ``speech``, then silence; returns ``(wav, (speech_start_s, speech_end_s))``."""
    lead, tail = int(round(lead_s * sample_rate)), int(round(tail_s * sample_rate))
    wav = np.concatenate([np.zeros(lead, np.float32), speech.astype(np.float32), np.zeros(tail, np.float32)])
    return wav, (lead / sample_rate, (lead + len(speech)) / sample_rate)
