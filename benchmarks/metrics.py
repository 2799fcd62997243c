"""The metrics stages on synthetic material (no real talking-face video ships anywhere):

1. A/V offset proxy: a real-photo clip (tests/media.py) whose jaw opening follows a known random syllable signal,
   with a harmonic voice whose loudness follows the same signal shifted by known frame counts; prints each shift,
   the estimate, its error in frames and the confidence, then the same for audio with no relation to the mouth.
2. Artifact detection on an enhancement clip: flags on the clean clip and on one frame per artifact kind.
3. SyncNet against the reference fixtures (seeded weights regenerated from their recipe): the largest difference of
   each output, and its cost in ms per 5-frame window (the scores of seeded weights mean nothing, only the agreement
   and the time do).

    .venv/bin/python benchmarks/metrics.py [--frames 75]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from pack import load_pack  # noqa: E402
FPS = 25.0
SAMPLE_RATE = 16000
LEAD = 20


def _voice(envelope: np.ndarray) -> np.ndarray:
    samples_per_frame = SAMPLE_RATE / FPS
    t = np.arange(int(len(envelope) * samples_per_frame))
    loudness = np.interp(t, (np.arange(len(envelope)) + 0.5) * samples_per_frame, envelope)
    carrier = sum(np.sin(2 * np.pi * 140 * h * t / SAMPLE_RATE) / h for h in range(1, 6))
    return (0.3 * loudness * carrier).astype(np.float32)


def proxy(media, frames: int) -> None:
    from talkinghead.pipelines.metrics.av_offset import estimate_offset, mouth_opening, speech_envelope

    raw = np.convolve(np.random.default_rng(3).random(frames + 2 * LEAD), np.ones(3) / 3, "same")
    drive = (raw - raw.min()) / (raw.max() - raw.min())
    clip = media.talking_clip(frames=frames, size=(192, 192), mouth_px=8.0, openness=drive[LEAD:LEAD + frames])
    start = time.perf_counter()
    opening = mouth_opening(clip.frames.astype(np.float32) / 255.0)
    ms = 1000 * (time.perf_counter() - start) / frames
    print(f"A/V offset proxy ({frames} frames at 25 fps, FaceMesh {ms:.1f} ms/frame):")
    errors = []
    for shift in (-12, -7, -3, 0, 2, 5, 9, 14):
        envelope = speech_envelope(_voice(drive[LEAD + shift:LEAD + shift + frames]), SAMPLE_RATE, FPS, frames)
        result = estimate_offset(opening, envelope, FPS)
        errors.append(abs(result.offset_frames - shift))
        print(f"  true {shift:+3d} frames -> {result.offset_frames:+6.2f} ({result.offset_ms:+7.1f} ms), "
              f"error {errors[-1]:.2f} frames, confidence {result.confidence:.2f}")
    noise = np.random.default_rng(9).normal(0, 0.1, int(frames / FPS * SAMPLE_RATE)).astype(np.float32)
    unrelated = estimate_offset(opening, speech_envelope(noise, SAMPLE_RATE, FPS, frames), FPS)
    print(f"  max error {max(errors):.2f} frames; unrelated noise audio: confidence {unrelated.confidence:.2f}")


def artifacts(enhance_media) -> None:
    from talkinghead.pipelines.metrics.artifacts import detect_artifacts

    clip = enhance_media.enhance_clip(frames=16, size=(192, 192), motion=0.5)
    inside = clip.region > 0.5
    frames = clip.generated.copy()
    frames[2][inside[2]] = np.nan
    for y in range(0, 192, 8):
        for x in range(0, 192, 8):
            block = frames[4, y:y + 8, x:x + 8]
            frames[4, y:y + 8, x:x + 8] = np.where(inside[4, y:y + 8, x:x + 8, None], block.mean(axis=(0, 1)), block)
    frames[6][inside[6]] = 1.0
    frames[11] = np.where(inside[11][..., None], np.clip(frames[11] * 0.5 + 0.3, 0, 1), frames[11])
    start = time.perf_counter()
    clean = detect_artifacts(clip.generated, clip.region)
    ms = 1000 * (time.perf_counter() - start) / len(frames)
    broken = detect_artifacts(frames, clip.region)
    print(f"Artifact detection ({ms:.1f} ms/frame at 192x192): clean clip flags {sorted(clean.flagged)} "
          f"(max blockiness {np.nanmax(clean.blockiness):.2f}); corrupted frames 2 (NaN), 4 (8x8 blocks), "
          f"6 (blown out), 11 (jump) -> flags {sorted(broken.flagged)}")


def syncnet() -> None:
    import torch
    from syncnet_synth import seeded_state

    from talkinghead.models.syncnet import load_syncnet
    from talkinghead.pipelines.metrics.lip_sync import mfcc, syncnet_scores

    fixtures = REPO / "tests" / "fixtures" / "syncnet"
    model = load_syncnet(seeded_state())
    with np.load(fixtures / "syncnet_tiny_forward.npz") as data:
        forward = {key: data[key] for key in data.files}
    with np.load(fixtures / "syncnet_eval_case.npz") as data:
        case = {key: data[key] for key in data.files}
    with torch.no_grad():
        audio = model.forward_aud(torch.from_numpy(forward["aud_in"])).numpy()
        lips = model.forward_lip(torch.from_numpy(forward["lip_in_uint8"]).float()).numpy()
    mfcc_rel = np.max(np.abs(mfcc(case["wav"]).T - case["mfcc"]) / np.abs(case["mfcc"]))
    start = time.perf_counter()
    result = syncnet_scores(model, case["frames_bgr"], case["wav"])
    ms = 1000 * (time.perf_counter() - start) / result["num_windows"]
    differences = {
        "forward": max(np.abs(audio - forward["aud_out"]).max(), np.abs(lips - forward["lip_out"]).max()),
        "embeddings": max(np.abs(result["lip_embeddings"] - case["im_feat"]).max(),
                          np.abs(result["audio_embeddings"] - case["cc_feat"]).max()),
        "distances": np.abs(result["dists"] - case["dists"]).max(),
        "LSE-D": abs(result["lse_d"] - float(case["lse_d"])),
        "LSE-C": abs(result["lse_c"] - float(case["lse_c"])),
    }
    print(f"SyncNet vs the reference fixtures: MFCC {mfcc_rel:.1e} relative, "
          + ", ".join(f"{name} {value:.1e}" for name, value in differences.items())
          + f", offset {result['offset']} (reference {int(case['offset'])})")
    print(f"SyncNet: {ms:.0f} ms per 5-frame window end to end ({torch.get_num_threads()} torch threads)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=75)
    args = parser.parse_args(argv)
    load_pack()
    import diff2lip_enhance_media as enhance_media
    import media

    proxy(media, args.frames)
    artifacts(enhance_media)
    syncnet()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
