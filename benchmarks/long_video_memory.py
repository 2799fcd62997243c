"""Peak memory of whole bundled-workflow runs on long clips: the runner plus the ComfyUI server it starts (the whole
process tree, RSS sampled every 0.2 s).

    python benchmarks/long_video_memory.py [--seconds 30 120] [--workflows diff2lip diff2lip_enhanced gagavatar_enhanced]
                                           [--size 1920x1080] [--fps 25]

Diff2Lip rows: a synthetic clip of the given length (a real portrait moving a little inside a 1080p frame, stereo
44.1 kHz sound) and a 16 kHz speech-like track, through ``talkinghead.py run WORKFLOW --video --audio`` with the tiny
official-format test models (tests/fixtures): the model work is small, what is measured is what the pipeline holds.
GAGAvatar rows: a synthetic tracked driver of that length at 30 fps rendered at 512² (``--avatar-size``) by a tiny
refiner of that output size.  Prints one row per run.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from pack import load_pack  # noqa: E402


class _SyntheticClip:
    """Frames made on the fly (a 2-minute 1080p clip would not fit in memory as an array)."""

    def __init__(self, seconds: float, size: tuple[int, int], fps: int):
        import cv2
        import media

        self.width, self.height = size
        self.fps, self.count = fps, int(round(seconds * fps))
        face = media.photo("astronaut")
        side = self.height // 2
        self.face = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        self.background = np.full((self.height, self.width, 3), 90, np.uint8)

    def source(self):
        from talkinghead.pipelines.stream import Source, StreamInfo

        clip = self

        class _Source(Source):
            def info(self):
                return StreamInfo(Fraction(clip.fps), clip.width, clip.height, clip.count, clip.audio())

            def frames(self, start=0):
                side = clip.face.shape[0]
                for i in range(start, clip.count):
                    frame = clip.background.copy()
                    x = clip.width // 2 - side // 2 + int(8 * np.sin(i / 15.0))
                    y = clip.height // 4 + int(4 * np.cos(i / 11.0))
                    frame[y:y + side, x:x + side] = clip.face
                    yield frame.astype(np.float32) / 255.0

            def signature(self):
                return {"synthetic": clip.count}

        return _Source()

    def audio(self) -> dict:
        from talkinghead.pipelines.media import make_audio

        rate = 44100
        t = np.arange(int(self.count / self.fps * rate)) / rate
        tone = 0.2 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
        return make_audio(np.stack([tone, 0.8 * tone]).astype(np.float32), rate)

    def speech_16k(self) -> np.ndarray:
        t = np.arange(int(self.count / self.fps * 16000)) / 16000
        syllables = (np.sin(2 * np.pi * 4 * t) > 0).astype(np.float32)  # 4 "syllables" a second
        return (0.3 * np.sin(2 * np.pi * 220 * t) * syllables).astype(np.float32)


def _models(folder: Path, avatar_size: int = 512) -> dict:
    """Tiny official-format models (as the tests use) and the --set overrides that select them."""
    import torch
    from spandrel.architectures.ESRGAN import ESRGAN

    import gagavatar_synth as synth

    (folder / "diff2lip").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "tests" / "fixtures" / "diff2lip" / "tiny_unet.pt", folder / "diff2lip" / "checkpoint.pt")
    (folder / "upscale_models").mkdir(exist_ok=True)
    torch.manual_seed(0)
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2)
    torch.save({"params_ema": net.state_dict()}, folder / "upscale_models" / "RealESRGAN_x2plus.pth")
    for sub in ("gagavatar", "flame"):
        (folder / sub).mkdir(exist_ok=True)
    levels = int(round(np.log2(avatar_size / 4)))  # the tiny refiner renders 4·2**levels pixels square
    torch.save({"model": synth.tiny_gagavatar_state_dict(num_vertices=64, refine_levels=levels), "meta_cfg": {}},
               folder / "gagavatar" / "GAGAvatar.pt")
    synth.write_synthetic_flame(folder / "flame" / "FLAME_with_eye.pt", num_vertices=64)
    return {"diff2lip": ["Diff2Lip Model.num_head_channels=32", 'Lip Sync.quality="fast"'],
            "diff2lip_enhanced": ["Diff2Lip Model.num_head_channels=32", 'Lip Sync.quality="fast"'],
            "gagavatar_enhanced": []}


def _peak_rss(process: subprocess.Popen, stop: threading.Event, result: dict) -> None:
    import psutil

    root = psutil.Process(process.pid)
    peak = 0
    while not stop.is_set():
        try:
            total = root.memory_info().rss + sum(c.memory_info().rss for c in root.children(recursive=True))
        except psutil.Error:
            total = 0
        peak = max(peak, total)
        time.sleep(0.2)
    result["peak"] = peak


def run_row(workflow: str, seconds: float, size, fps: int, work: Path, models: Path, overrides: list[str]) -> dict:
    from talkinghead.pipelines.media import write_wav
    from talkinghead.pipelines.stream import FrameStream, encode_stream

    inputs = work / f"{workflow}_{seconds:g}s"
    inputs.mkdir()
    command = [sys.executable, str(REPO / "scripts" / "talkinghead.py"), "run",
               str(REPO / "workflows" / f"{workflow}_api.json"), "--models-dir", str(models),
               "--output-dir", str(inputs / "out"), "--timeout", str(24 * 3600)]
    if workflow.startswith("diff2lip"):
        clip = _SyntheticClip(seconds, size, fps)
        video, _ = encode_stream(FrameStream(clip.source()), inputs / "clip.mp4", crf=23, chunk_size=8)
        speech = write_wav(inputs / "speech.wav", clip.speech_16k(), 16000)
        command += ["--video", str(video), "--audio", str(speech)]
        frames = clip.count
    else:
        import gagavatar_synth as synth

        frames = int(round(seconds * 30))
        synth.write_synthetic_driver(inputs / "gagavatar_driver", num_frames=frames)
        (inputs / "gagavatar_driver" / "meta.json").write_text(json.dumps({"fps": 30.0}))
        synth.write_synthetic_driver(inputs / "gagavatar_source", num_frames=1, image_set=True, seed=3)
        command += ["--input", str(inputs / "gagavatar_driver"), "--input", str(inputs / "gagavatar_source")]
    for item in overrides:
        command += ["--set", item]
    stop, result = threading.Event(), {}
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = threading.Thread(target=_peak_rss, args=(process, stop, result))
    sampler.start()
    output = process.communicate()[0]
    stop.set()
    sampler.join()
    row = {"workflow": workflow, "seconds": seconds, "frames": frames, "rc": process.returncode,
           "peak_rss_gb": round(result.get("peak", 0) / 2**30, 2), "wall_s": round(time.monotonic() - started)}
    if process.returncode != 0:
        row["error"] = output[-2000:]
    shutil.rmtree(inputs, ignore_errors=True)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, nargs="+", default=[30, 120])
    ap.add_argument("--workflows", nargs="+", default=["diff2lip", "diff2lip_enhanced", "gagavatar_enhanced"])
    ap.add_argument("--size", default="1920x1080", help="Diff2Lip clip size WxH")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--avatar-size", type=int, default=512, help="GAGAvatar render side (a power of two)")
    args = ap.parse_args(argv)
    load_pack()
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="long-video-memory-") as tmp:
        work = Path(tmp)
        overrides = _models(work / "models", args.avatar_size)
        print("workflow            | clip   | frames | peak RSS (runner + ComfyUI) | wall", flush=True)
        for workflow in args.workflows:
            for seconds in args.seconds:
                row = run_row(workflow, seconds, size, args.fps, work, work / "models", overrides[workflow])
                print(f"{workflow:19s} | {seconds:4g} s | {row['frames']:6d} | {row['peak_rss_gb']:6.2f} GB"
                      f"{'' if row['rc'] == 0 else ' (FAILED rc=%d)' % row['rc']:>16s} | {row['wall_s']} s", flush=True)
                if row["rc"] != 0:
                    print(row["error"], file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
