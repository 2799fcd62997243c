"""``talkinghead.py batch WORKFLOW_api.json --inputs PATH_OR_GLOB... --output-dir DIR``

Runs an API workflow (one Load Video feeding it, one Save Video taking its result; audio loaders get each clip's
audio) over many clips.  Each clip is cut into chunks of ``--chunk-seconds`` at its own frame rate; every chunk is
run with ``--context-seconds`` of frames and audio on each side and keeps only its own frames (written losslessly),
then the clip is encoded once with its audio.  Without ``--ray`` the chunks run one after another in one embedded
ComfyUI; ``--ray local:N`` starts N local Ray workers, ``--ray auto`` / ``--ray HOST:PORT`` uses a cluster (one worker
per GPU).  Finished chunks and videos are recorded in DIR/batch_manifest.json; ``--resume`` skips what is recorded and
verified (size and SHA-256).  Existing files are never overwritten unless ``--overwrite``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...pipelines.media import write_atomically, free_path
from ..runner import apply_overrides, load_api_workflow, report_missing_models, resolve_models_dir
from .cut import audio_range, encode_final, load_audio, probe, subclips, write_subclip
from .manifest import Manifest, file_record, sha256_file, verified
from .plan import Chunk, Job, expand_inputs, pair_inputs, plan_chunks
from .pool import LocalPool, RayPool
from .workflow import check_batchable, needs_audio


@dataclass
class Video:
    """A clip of the batch and the state of its chunks in this run."""
    job: Job
    key: str
    frames: int
    fps: object
    chunks: list[Chunk]
    todo: list[Chunk]
    entry: dict
    failed: dict = field(default_factory=dict)  # chunk index -> error text
    status: str = "pending"


def _audio_rate(path: Path | None) -> int | None:
    if path is None:
        return None
    import av

    with av.open(str(path)) as container:
        return container.streams.audio[0].codec_context.sample_rate if container.streams.audio else None


def video_key(prompt: dict, job: Job, chunk_seconds: float, context_seconds: float) -> str:
    """What a clip's results depend on: the workflow, the input files' contents and the chunking."""
    parts = [json.dumps(prompt, sort_keys=True), sha256_file(job.video),
             sha256_file(job.audio) if job.audio else "", f"{chunk_seconds}:{context_seconds}"]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class Progress:
    """One line: chunks done / total, frames per second of this run, ETA, failures."""

    def __init__(self, total_chunks: int, done_chunks: int, total_frames: int, enabled: bool = True):
        self.total, self.done, self.frames_left = total_chunks, done_chunks, total_frames
        self.frames_run, self.failures, self.started, self.enabled = 0, 0, time.monotonic(), enabled

    def update(self, frames: int = 0, chunks: int = 0, failures: int = 0) -> None:
        self.done += chunks
        self.frames_run += frames
        self.frames_left -= frames
        self.failures += failures
        self.draw()

    def draw(self) -> None:
        if not self.enabled:
            return
        elapsed = max(1e-6, time.monotonic() - self.started)
        fps = self.frames_run / elapsed
        eta = "--:--:--" if fps <= 0 else time.strftime("%H:%M:%S", time.gmtime(self.frames_left / fps))
        print(f"\r[batch] chunks {self.done}/{self.total} | {fps:.2f} frames/s | ETA {eta} | failures "
              f"{self.failures}   ", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            print(file=sys.stderr, flush=True)


def plan_videos(prompt: dict, jobs: list[Job], manifest: Manifest, chunk_seconds: float,
                context_seconds: float) -> list[Video]:
    videos = []
    for job in jobs:
        info = probe(job.video)
        key = video_key(prompt, job, chunk_seconds, context_seconds)
        entry = manifest.video(key)
        entry.update({"input": str(job.video), "audio": str(job.audio) if job.audio else None,
                      "frames": info.frames, "fps": str(info.fps)})
        chunks = plan_chunks(info.frames, info.fps, _audio_rate(job.audio), chunk_seconds, context_seconds)
        if verified(entry.get("output"), manifest.root) and verified(entry.get("report_file"), manifest.root):
            videos.append(Video(job, key, info.frames, info.fps, chunks, [], entry, status="done before"))
            continue
        todo = [c for c in chunks if not verified(entry["chunks"].get(str(c.index)), manifest.root)]
        videos.append(Video(job, key, info.frames, info.fps, chunks, todo, entry))
    return videos


def make_tasks(prompt: dict, videos: list[Video], timeout: float):
    """Tasks in order, cut lazily: ``(video, chunk, task)``; a whole-clip chunk sends the input files as they are."""
    for video in videos:
        if not video.todo:
            continue
        whole = len(video.chunks) == 1
        base = {"prompt": prompt, "timeout": timeout, "fps": float(video.fps)}
        if whole:
            chunk = video.chunks[0]
            audio = None if video.job.audio is None else (video.job.audio.name, video.job.audio.read_bytes())
            yield video, chunk, dict(base, video=(video.job.video.name, video.job.video.read_bytes()), audio=audio,
                                     keep_start=0, keep_count=0)
            continue
        audio = load_audio(video.job.audio)
        with tempfile.TemporaryDirectory(prefix="talkinghead-cut-") as folder:
            for chunk, frames in subclips(video.job.video, video.todo):
                name = f"{video.job.video.stem}_{chunk.index:04d}"
                samples = None if audio is None else audio_range(audio, chunk, video.fps)
                clip, wav = write_subclip(Path(folder), name, frames, video.fps, samples,
                                          audio["sample_rate"] if audio else 0)
                task = dict(base, video=(clip.name, clip.read_bytes()),
                            audio=None if wav is None else (wav.name, wav.read_bytes()),
                            keep_start=chunk.start - chunk.context_start, keep_count=chunk.frames)
                clip.unlink()
                if wav is not None:
                    wav.unlink()
                yield video, chunk, task


def _own_faces(reports: list[dict], chunk: Chunk) -> dict:
    """Faces found / passed-through frames among the chunk's own frames, from the lip-sync report(s)."""
    # a streaming sink reports one entry per stage: the lip sync's is one of them
    reports = [r for report in reports for r in [report, *(s["lip_sync"] for s in report.get("stages", [])
                                                            if isinstance(s, dict) and "lip_sync" in s)]]
    for report in reports:
        if "frames" in report and "faces_found" in report:
            lo = chunk.start - chunk.context_start
            passed = report.get("passed_through_frames")
            if passed is None:  # the node drops long lists; only whole-clip counts are exact then
                return {"faces_found": None, "passed_through": None}
            own = [i + chunk.context_start for i in passed if lo <= i < lo + chunk.frames]
            return {"faces_found": chunk.frames - len(own), "passed_through": len(own), "passed_through_frames": own}
    return {}


def record_chunk(manifest: Manifest, video: Video, chunk: Chunk, result: dict, retries: int) -> None:
    folder = manifest.root / "chunks" / video.key
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"chunk_{chunk.index:04d}.mkv"
    # Our own intermediate: an unverified leftover of an earlier run is replaced (atomically).
    write_atomically(path, True, lambda temp: Path(temp).write_bytes(result["data"]))
    video.entry["chunks"][str(chunk.index)] = dict(
        file_record(path, manifest.root), start=chunk.start, end=chunk.end, worker=result["worker"],
        retries=retries, seconds=round(result["seconds"], 3), **_own_faces(result["reports"], chunk))
    manifest.save()


def finish_video(manifest: Manifest, video: Video, overwrite: bool, keep_chunks: bool = False) -> None:
    """Encode the clip once from its chunks, write its report next to it, record both, drop the chunks (unless
    ``keep_chunks``: then they stay in DIR/chunks/KEY, the lossless frames the final video was encoded from)."""
    records = [video.entry["chunks"][str(c.index)] for c in video.chunks]
    files = [manifest.root / r["file"] for r in records]
    output = encode_final(free_path(manifest.root / f"{video.job.video.stem}.mp4", overwrite), files, video.fps,
                          load_audio(video.job.audio), video.frames, overwrite=overwrite)
    counts = [r.get("faces_found") for r in records]
    report = {"input": str(video.job.video), "audio": str(video.job.audio) if video.job.audio else None,
              "output": output.name, "frames": video.frames, "fps": float(video.fps),
              "seconds": round(sum(r["seconds"] for r in records), 3), "chunks": len(records),
              "faces_found": None if None in counts else sum(counts),
              "passed_through": None if None in counts else sum(r["passed_through"] for r in records),
              "workers": sorted({r["worker"] for r in records}), "retries": sum(r["retries"] for r in records),
              "chunk_details": [{k: r.get(k) for k in ("start", "end", "worker", "retries", "seconds",
                                                       "faces_found", "passed_through")} for r in records]}
    report_path = write_atomically(free_path(output.with_suffix(".json"), overwrite), overwrite,
                                    lambda temp: Path(temp).write_text(json.dumps(report, indent=1)))
    video.entry.update(output=file_record(output, manifest.root), report_file=file_record(report_path, manifest.root),
                       report=report)
    video.status = "done"
    if keep_chunks:
        manifest.save()
        return
    video.entry["chunks"] = {}
    manifest.save()
    shutil.rmtree(manifest.root / "chunks" / video.key, ignore_errors=True)
    try:
        (manifest.root / "chunks").rmdir()  # once no clip has chunks left
    except OSError:
        pass


def run_batch(prompt: dict, jobs: list[Job], output_dir: Path, pool, *, chunk_seconds: float = 0.0,
              context_seconds: float = 0.5, resume: bool = False, overwrite: bool = False, retries: int = 2,
              timeout: float = 6 * 3600, progress: bool = True, keep_chunks: bool = False,
              on_event=None) -> list[Video]:
    """Run the batch on ``pool`` (:class:`LocalPool` or :class:`RayPool`); returns every clip with its status.

    ``on_event(name, info)`` is called with ``("chunk_done", {"video", "chunk", "result"})`` and
    ``("chunk_failed", {"video", "chunk", "error"})`` (for tests and tools).
    """
    check_batchable(prompt)
    output_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.open(output_dir, resume)
    videos = plan_videos(prompt, jobs, manifest, chunk_seconds, context_seconds)
    manifest.save()
    total = sum(len(v.chunks) for v in videos)
    bar = Progress(total, total - sum(len(v.todo) for v in videos),
                   sum(c.frames for v in videos for c in v.todo), progress)
    bar.draw()
    tasks = make_tasks(prompt, videos, timeout)
    retry, items, attempts = [], {}, {}
    remaining = {v.key: {c.index for c in v.todo} for v in videos}
    try:
        for video in videos:  # clips whose chunks were all done before
            if video.status == "pending" and not video.todo:
                finish_video(manifest, video, overwrite, keep_chunks)
        exhausted = False
        while True:
            while pool.idle() and (retry or not exhausted):
                item = retry.pop(0) if retry else next(tasks, None)
                if item is None:
                    exhausted = True
                    break
                items[(item[0].key, item[1].index)] = item
                pool.submit((item[0].key, item[1].index), item[2])
            if not pool.busy():
                break
            key, result, error = pool.wait()
            video, chunk, _ = item = items[key]
            if error is not None:
                attempts[key] = attempts.get(key, 0) + 1
                if attempts[key] <= retries:
                    retry.append(item)
                else:
                    video.failed[chunk.index] = f"{type(error).__name__}: {error}"
                    video.status = "failed"
                    items.pop(key)
                bar.update(failures=1)
                if on_event:
                    on_event("chunk_failed", {"video": video, "chunk": chunk, "error": error})
                continue
            items.pop(key)
            record_chunk(manifest, video, chunk, result, attempts.get(key, 0))
            remaining[video.key].discard(chunk.index)
            bar.update(frames=chunk.frames, chunks=1)
            if on_event:
                on_event("chunk_done", {"video": video, "chunk": chunk, "result": result})
            if not remaining[video.key] and not video.failed:
                finish_video(manifest, video, overwrite, keep_chunks)
    finally:
        bar.close()
    return videos


def summary(videos: list[Video]) -> str:
    rows = [("clip", "frames", "chunks", "status", "retries", "output")]
    for v in videos:
        report = v.entry.get("report") or {}
        status = v.status if not v.failed else "FAILED: " + "; ".join(f"chunk {i}: {e}" for i, e in v.failed.items())
        rows.append((v.job.video.name, str(v.frames), str(len(v.chunks)), status[:80],
                     str(report.get("retries", "")), report.get("output", "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="talkinghead.py batch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workflow", type=Path, help="API-format workflow (e.g. workflows/diff2lip_api.json)")
    ap.add_argument("--inputs", nargs="+", required=True, metavar="PATH_OR_GLOB",
                    help="videos, and audio paired by file name (or one audio for all; else each video's own sound)")
    ap.add_argument("--output-dir", type=Path, required=True)
    ap.add_argument("--ray", metavar="auto|ADDRESS|local:N", help="run on Ray workers (pip install 'ray>=2.60')")
    ap.add_argument("--workers", type=int, default=0, help="Ray workers (default: one per GPU, else per CPU)")
    ap.add_argument("--chunk-seconds", type=float, default=0.0, help="cut clips into chunks this long (0 = never)")
    ap.add_argument("--context-seconds", type=float, default=0.5,
                    help="frames and audio each chunk also sees on each side (for smoothing windows and mel windows)")
    ap.add_argument("--resume", action="store_true", help="continue the batch recorded in --output-dir")
    ap.add_argument("--overwrite", action="store_true", help="replace existing output files of the same name")
    ap.add_argument("--keep-chunks", action="store_true",
                    help="keep each clip's lossless chunks (DIR/chunks/) after its video is encoded")
    ap.add_argument("--retries", type=int, default=2, help="runs again of a failed chunk before it is reported")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.INPUT=VALUE")
    ap.add_argument("--models-dir", type=Path, help="models folder (default: $TALKINGHEAD_MODELS_DIR or "
                                                    "~/.cache/talkinghead/models); the same path on every Ray node")
    ap.add_argument("--gpu", action="store_true", help="let the local worker use the GPU (Ray workers do when they "
                                                       "hold one)")
    ap.add_argument("--timeout", type=float, default=6 * 3600, help="seconds one chunk may take")
    args = ap.parse_args(argv)

    prompt = apply_overrides(load_api_workflow(args.workflow), args.overrides)
    check_batchable(prompt)
    jobs = pair_inputs(expand_inputs(args.inputs), needs_audio(prompt))
    models = resolve_models_dir(args.models_dir).resolve()
    if report_missing_models(prompt, models):
        return 3
    pool = (RayPool(args.ray, str(models), args.workers, cpu=not args.gpu) if args.ray
            else LocalPool(str(models), cpu=not args.gpu))
    try:
        videos = run_batch(prompt, jobs, args.output_dir.resolve(), pool, chunk_seconds=args.chunk_seconds,
                           context_seconds=args.context_seconds, resume=args.resume, overwrite=args.overwrite,
                           retries=args.retries, timeout=args.timeout,
                           keep_chunks=args.keep_chunks)
    except KeyboardInterrupt:
        print("\ninterrupted: finished chunks are recorded; run again with --resume to continue", file=sys.stderr)
        return 130
    finally:
        pool.close()
    print(summary(videos))
    return 1 if any(v.failed for v in videos) else 0
