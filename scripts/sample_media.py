"""Sample media for a first run when the user gives none, and the one place that finds real and synthetic speech
(tests/media.py builds its test clips on these): a short clip of a real public-domain portrait (NASA's astronaut
photo shipped in scikit-image) with a slow push-in, and real read speech (LibriVox clips from Debian's
pocketsphinx-testdata) or, failing that, espeak-ng.  Nothing is downloaded."""
from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
ESPEAK_TEXT = "Hello. This is a lip sync test of the talking head nodes. The mouth should follow every word."


def librivox_files() -> list[Path]:
    """The LibriVox 16 kHz read-speech clips of pocketsphinx-testdata in order (empty when it is not installed)."""
    return sorted(LIBRIVOX_DIR.glob("*.wav"))


def librivox_speech(start_clip: int = 0) -> np.ndarray | None:
    """All LibriVox clips joined in order from ``start_clip`` (24.7 s), float32 mono 16 kHz; None when absent."""
    import soundfile

    files = librivox_files()
    if not files:
        return None
    files = files[start_clip:] + files[:start_clip]
    return np.concatenate([soundfile.read(str(path), dtype="float32")[0] for path in files])


def espeak_speech(text: str = ESPEAK_TEXT, voice: str = "en-us", words_per_minute: int | None = None):
    """Synthetic speech from espeak-ng, float32 mono 16 kHz; None when espeak-ng is not installed."""
    import soundfile

    from ..pipelines.media import audio_to_mono

    program = shutil.which("espeak-ng")
    if program is None:
        return None
    speed = [] if words_per_minute is None else ["-s", str(words_per_minute)]
    wav = subprocess.run([program, "-v", voice, *speed, "--stdout", text], check=True, capture_output=True).stdout
    samples, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    return audio_to_mono(samples, rate, SAMPLE_RATE)


def portrait_clip(seconds: float = 4.0, fps: float = 25.0, size: int = 384) -> np.ndarray:
    """uint8 [N,size,size,3]: the astronaut photo with a slow zoom towards the face (so boxes move a little)."""
    import cv2
    from skimage import data

    photo = data.astronaut()
    count = int(round(seconds * fps))
    frames = []
    for k in range(count):
        zoom = 1.0 + 0.15 * k / max(count - 1, 1)
        centre = (225.0, 130.0)  # the face
        matrix = cv2.getRotationMatrix2D(centre, 0.0, zoom)
        warped = cv2.warpAffine(photo, matrix, (512, 512), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        frames.append(cv2.resize(warped, (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(frames)


def speech(seconds: float = 4.0) -> tuple[np.ndarray, int]:
    """Mono float32 speech at 16 kHz: LibriVox if installed, else espeak-ng; RuntimeError naming both otherwise."""
    wav = librivox_speech()
    if wav is None:
        wav = espeak_speech()
    if wav is None:
        raise RuntimeError("no sample speech found: install Debian's pocketsphinx-testdata or espeak-ng "
                           "(scripts/setup.sh does as root), or pass your own files with --input")
    return wav[: int(seconds * SAMPLE_RATE)], SAMPLE_RATE


def write_sample_media(folder: Path, video_name: str, speech_name: str, seconds: float = 4.0) -> list[Path]:
    """Write the sample clip (H.264) and speech (WAV) into ``folder`` unless files of those names exist."""
    from ..pipelines.media import write_video, write_wav

    written = []
    if not (folder / video_name).exists():
        written.append(write_video(folder / video_name, portrait_clip(seconds), 25.0))
    if not (folder / speech_name).exists():
        wav, rate = speech(seconds)
        written.append(write_wav(folder / speech_name, wav, rate))
    return written
