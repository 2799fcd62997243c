"""Batch scaling: the same chunked batch on 1 and on 2 local Ray workers, with the tiny official-format Diff2Lip.

Prints for each worker count the wall time (without starting the workers, printed apart), frames per second and
the speed-up, and the overhead each chunk pays around the lip sync itself: in the worker, the chunk's wall time minus
the Lip Sync node's own seconds (writing the sub-clip into ComfyUI, the prompt, loading and saving frames); and the
context frames computed and thrown away.  The tiny model makes the overhead visible; with the released model a frame
costs seconds, so the same overhead is a small fraction.

    .venv/bin/python benchmarks/batch_scaling.py [--clips 2] [--frames 50] [--chunk-seconds 0.5] [--workers 1 2]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=2)
    ap.add_argument("--frames", type=int, default=50, help="frames per clip (25 fps, 128x128)")
    ap.add_argument("--chunk-seconds", type=float, default=0.5)
    ap.add_argument("--context-seconds", type=float, default=0.3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()

    sys.path.insert(0, str(REPO / "scripts"))
    sys.path.insert(0, str(REPO / "tests"))
    from import_pack import import_pack

    import_pack()
    import media  # tests/media.py: real photos warped into talking clips, LibriVox speech
    from talkinghead.pipelines.media import write_video, write_wav
    from talkinghead.scripts.batch.plan import pair_inputs
    from talkinghead.scripts.batch.pool import RayPool
    from talkinghead.scripts.batch.run import run_batch
    from talkinghead.scripts.runner import apply_overrides, load_api_workflow

    work = Path(tempfile.mkdtemp(prefix="batch-scaling-"))
    try:
        inputs = work / "inputs"
        inputs.mkdir()
        for i in range(args.clips):
            clip = media.talking_clip(frames=args.frames, fps=25.0, size=(128, 128))
            write_video(inputs / f"clip{i}.mp4", clip.frames, 25.0)
            write_wav(inputs / f"clip{i}.wav", media.speech_16k(seconds=args.frames / 25 + 0.5, start_clip=i), 16000)
        models = work / "models"
        (models / "diff2lip").mkdir(parents=True)
        shutil.copy(REPO / "tests" / "fixtures" / "diff2lip" / "tiny_unet.pt", models / "diff2lip" / "tiny_unet.pt")
        prompt = apply_overrides(load_api_workflow(REPO / "workflows" / "diff2lip_api.json"),
                                 ['Diff2Lip Model.ckpt_name="tiny_unet.pt"', "Diff2Lip Model.num_head_channels=32",
                                  'Lip Sync.quality="fast"'])
        jobs = pair_inputs(sorted(inputs.glob("*.mp4")) + sorted(inputs.glob("*.wav")), needs_audio=True)
        total_frames = args.clips * args.frames
        rows = []
        for workers in args.workers:
            started = time.perf_counter()
            pool = RayPool(f"local:{workers}", str(models))
            startup = time.perf_counter() - started
            overheads, computed = [], []

            def on_event(name, info):
                if name == "chunk_done":
                    node = sum(r.get("seconds", 0.0) for r in info["result"]["reports"])
                    overheads.append(info["result"]["seconds"] - node)
                    chunk = info["chunk"]
                    computed.append(chunk.context_end - chunk.context_start)

            try:
                started = time.perf_counter()
                run_batch(prompt, jobs, work / f"out{workers}", pool, chunk_seconds=args.chunk_seconds,
                          context_seconds=args.context_seconds, progress=False, on_event=on_event)
                wall = time.perf_counter() - started
            finally:
                pool.close()
            rows.append((workers, startup, wall, total_frames / wall, statistics.mean(overheads), len(overheads),
                         sum(computed) / total_frames))
        base = rows[0][2]
        print(f"{args.clips} clips x {args.frames} frames, chunks of {args.chunk_seconds} s, "
              f"context {args.context_seconds} s each side")
        print("workers  startup_s  wall_s  frames/s  speed-up  chunks  overhead_s/chunk  computed/own frames")
        for workers, startup, wall, fps, overhead, chunks, ratio in rows:
            print(f"{workers:7d}  {startup:9.1f}  {wall:6.1f}  {fps:8.2f}  {base / wall:7.2f}x  {chunks:6d}  "
                  f"{overhead:16.2f}  {ratio:19.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
