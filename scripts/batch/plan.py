"""Batch inputs and chunk plans: which clip goes with which audio, and which frames each task computes."""
from __future__ import annotations

import glob
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"}
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac"}
# Rates at which the audio of a sub-clip must start on a whole step for a chunk to see exactly the samples (and
# Diff2Lip's 80-per-second mel frames) the whole clip sees: 16 kHz is the rate lip sync resamples to.
_ALIGNED_RATES = (80, 16000)


@dataclass(frozen=True)
class Job:
    """One clip of the batch: its video and the audio that drives it (None: the workflow loads no audio)."""
    video: Path
    audio: Path | None


@dataclass(frozen=True)
class Chunk:
    """Frames ``[start, end)`` are this task's own; ``[context_start, context_end)`` is what the workflow sees."""
    index: int
    start: int
    end: int
    context_start: int
    context_end: int

    @property
    def frames(self) -> int:
        return self.end - self.start


def expand_inputs(patterns: list[str]) -> list[Path]:
    """Files named by paths or globs, in order, each once; a pattern that matches nothing is an error."""
    found: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        paths = [Path(m) for m in matches if Path(m).is_file()]
        if not paths:
            raise SystemExit(f"--inputs {pattern!r}: no such file")
        found += [p.resolve() for p in paths if p.resolve() not in found]
    return found


def pair_inputs(files: list[Path], needs_audio: bool) -> list[Job]:
    """Videos with their audio: the audio file of the same name, else the one audio file given for all, else the
    video's own sound track.  Files that are neither video nor audio are refused."""
    videos = [f for f in files if f.suffix.lower() in VIDEO_SUFFIXES]
    audios = [f for f in files if f.suffix.lower() in AUDIO_SUFFIXES]
    other = [f for f in files if f not in videos and f not in audios]
    if other:
        raise SystemExit(f"--inputs: not a video ({', '.join(sorted(VIDEO_SUFFIXES))}) or audio file: {other[0]}")
    if not videos:
        raise SystemExit("--inputs: no video files given")
    if not needs_audio:
        return [Job(v, None) for v in videos]
    by_stem = {a.stem: a for a in audios}
    shared = audios[0] if len(audios) == 1 else None
    return [Job(v, by_stem.get(v.stem, shared) or v) for v in videos]


def alignment_step(fps: Fraction, sample_rate: int | None) -> int:
    """Smallest frame step at which frame times fall on whole samples of the audio and of the 16 kHz / 80 Hz-mel
    grids, so that a sub-clip starting there sees exactly the whole clip's samples and mel frames."""
    step = 1
    for rate in _ALIGNED_RATES + ((int(sample_rate),) if sample_rate else ()):
        step = math.lcm(step, (Fraction(rate) / fps).denominator)
    return step


def plan_chunks(num_frames: int, fps: Fraction, sample_rate: int | None, chunk_seconds: float,
                context_seconds: float) -> list[Chunk]:
    """Own ranges of about ``chunk_seconds`` each (0: the whole clip), with ``context_seconds`` of frames on each
    side; a chunk's context starts on the alignment step (so it may get a few frames more on the left)."""
    if num_frames < 1:
        raise ValueError("a clip without frames cannot be planned")
    length = int(round(chunk_seconds * fps)) if chunk_seconds > 0 else num_frames
    if length >= num_frames or length < 1:
        return [Chunk(0, 0, num_frames, 0, num_frames)]
    context = int(math.ceil(context_seconds * fps))
    step = alignment_step(fps, sample_rate)
    chunks = []
    for index, start in enumerate(range(0, num_frames, length)):
        end = min(num_frames, start + length)
        context_start = max(0, (start - context) // step * step)
        chunks.append(Chunk(index, start, end, context_start, min(num_frames, end + context)))
    return chunks
