"""Sample media for a first run when the user gives none: a short clip of a real public-domain portrait (NASA's
astronaut photo shipped in scikit-image) with a slow push-in, and real read speech (LibriVox clips from Debian's
pocketsphinx-testdata) or, failing that, espeak-ng.  Nothing is downloaded."""
from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox/*.wav"


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
    import soundfile

    files = sorted(glob.glob(LIBRIVOX))
    if files:
        wav = np.concatenate([soundfile.read(f, dtype="float32")[0] for f in files])
    elif shutil.which("espeak-ng"):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "speech.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(out), "Hello. This is a lip sync test of the "
                            "talking head nodes. The mouth should follow every word."], check=True)
            raw, rate = soundfile.read(str(out), dtype="float32")
        from ..pipelines.media import audio_to_mono

        wav = audio_to_mono(raw, rate)
    else:
        raise RuntimeError("no sample speech found: install Debian's pocketsphinx-testdata or espeak-ng "
                           "(scripts/setup.sh does as root), or pass your own files with --input")
    return wav[: int(seconds * 16000)], 16000


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
