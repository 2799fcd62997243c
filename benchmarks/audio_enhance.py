"""Measure the audio stage on real speech (Debian pocketsphinx-testdata LibriVox, 24.7 s) with added noise.

Prints, for spectral subtraction: SNR, segmental SNR and the distance between the release Diff2Lip mel of the
processed audio and that of the clean speech (mean |difference| in the model's [-4, 4] units); for loudness: the
error after normalisation; for silero-vad: per-video-frame accuracy on silence + speech + silence clips; and the
cost of every stage in ms (wall and process CPU) per second of audio.

    .venv/bin/python benchmarks/audio_enhance.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

from pack import load_pack

RATE = 16000


def _modules():
    """Import the pack under a fixed name (its modules use relative imports) and the test-media helpers."""
    load_pack()
    import media
    from talkinghead.pipelines import audio_enhance
    from talkinghead.pipelines.diff2lip.audio import melspectrogram

    return media, audio_enhance, melspectrogram


def _voiced_span(speech: np.ndarray) -> tuple[float, float]:
    frames = speech[: len(speech) // 320 * 320].reshape(-1, 320)
    level = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    voiced = np.flatnonzero(level > level.max() - 20)
    return voiced[0] * 0.02, (voiced[-1] + 1) * 0.02


def denoising_table(media, ae, melspectrogram, clean: np.ndarray) -> None:
    from talkinghead.pipelines.diff2lip_enhance.evaluation import segmental_snr_db, snr_db

    target = melspectrogram(clean)
    mel_error = lambda wav: np.abs(melspectrogram(wav) - target).mean()  # noqa: E731
    print("\nSpectral subtraction (defaults: over-subtraction 4, floor 0.1, noise from the quietest 10 % frames)")
    print(f"{'noise':>6} {'SNR in':>7} | {'SNR':>12} {'segSNR':>14} {'mel |diff|':>14}   (noisy -> cleaned)")
    for kind in ("white", "pink"):
        for snr in (0.0, 5.0, 10.0):
            noisy, _ = media.add_noise(clean, snr, kind, seed=1)
            cleaned = ae.spectral_subtract(noisy, RATE)
            print(f"{kind:>6} {snr:>5.0f}dB | {snr_db(clean, noisy):5.2f} -> {snr_db(clean, cleaned):5.2f} "
                  f"{segmental_snr_db(clean, noisy):6.2f} -> {segmental_snr_db(clean, cleaned):5.2f} "
                  f"{mel_error(noisy):6.3f} -> {mel_error(cleaned):5.3f}")


def loudness_table(media, ae, clean: np.ndarray) -> None:
    print("\nLoudness (BS.1770-4)")
    for rate in (48000, 16000):
        measured = ae.integrated_loudness(media.tone(997, 5.0, 0.1, rate), rate)
        print(f"  997 Hz sine at -20 dBFS, {rate} Hz: {measured:.3f} LUFS (expected -23.01)")
    errors = []
    for gain_db in (-30, -20, -10, 0):
        noisy, _ = media.add_noise(clean * 10 ** (gain_db / 20), 10.0, "pink", seed=2)
        for compress in (False, True):
            wav = ae.enhance_speech(noisy, compress=compress, target_lufs=-23.0)
            errors.append(abs(ae.integrated_loudness(wav, RATE) + 23.0))
    print(f"  noisy speech at 4 input levels, 2 chains: max |loudness - (-23)| after normalisation = "
          f"{max(errors):.4f} LU")
    compressed = ae.enhance_speech(clean, compress=True)
    spread = lambda wav: np.percentile(_block_levels(wav), 95) - np.percentile(_block_levels(wav), 10)  # noqa: E731
    print(f"  speech level spread (95th - 10th percentile of 50 ms RMS, dB): {spread(clean):.1f} before, "
          f"{spread(compressed):.1f} after compression (at -23 LUFS: -30 dB threshold, 4:1)")


def _block_levels(wav: np.ndarray) -> np.ndarray:
    blocks = wav[: len(wav) // 800 * 800].reshape(-1, 800).astype(np.float64)
    levels = 10 * np.log10(np.mean(blocks ** 2, axis=1) + 1e-12)
    return levels[levels > levels.max() - 40]  # speech blocks only


def vad_table(media, ae) -> None:
    import soundfile

    print("\nsilero-vad per-frame accuracy at 25 fps, 1.5 s silence + LibriVox clip + 1.5 s silence")
    print(f"{'background':>22} {'accuracy':>9} {'false speech':>13} {'of which >0.3 s from speech':>28} "
          f"{'missed':>7}")
    for label, snr in (("digital silence", None), ("white noise, 20 dB", 20.0), ("white noise, 10 dB", 10.0),
                       ("pink noise, 10 dB", 10.0)):
        correct = false_speech = far_false = missed = total = 0
        for index, path in enumerate(media.librivox_files()):
            speech = soundfile.read(str(path), dtype="float32")[0]
            wav, (start, _) = media.silence_speech_silence(speech, 1.5, 1.5)
            if snr is not None:
                kind = "pink" if "pink" in label else "white"
                noise = {"white": media.white_noise, "pink": media.pink_noise}[kind](len(wav) / RATE, 1.0, index)
                wav = wav + noise * float(speech.std()) * 10 ** (-snr / 20)
            on, off = (start + t for t in _voiced_span(speech))
            count = int(len(wav) / RATE * 25)
            times = np.arange(count) / 25
            truth = (times < off) & (times + 0.04 > on)
            active = ae.speech_activity(wav, 25, count)
            correct += int(np.sum(active == truth))
            false_speech += int(np.sum(active & ~truth))
            far_false += int(np.sum(active & ((times + 0.04 < on - 0.3) | (times > off + 0.3))))
            missed += int(np.sum(~active & truth))
            total += count
        print(f"{label:>22} {correct / total:9.3f} {false_speech:>13d} {far_false:>28d} {missed:>7d}   "
              f"({total} frames)")


def timing_table(media, ae, clean: np.ndarray, repeat: int) -> None:
    seconds = len(clean) / RATE
    noisy, _ = media.add_noise(clean, 5.0, "white", seed=3)
    stages = {
        "spectral_subtract": lambda: ae.spectral_subtract(noisy, RATE),
        "normalize_loudness": lambda: ae.normalize_loudness(noisy, RATE),
        "compress_dynamic_range": lambda: ae.compress_dynamic_range(noisy, RATE),
        "shift_audio": lambda: ae.shift_audio(noisy, RATE, 40.0),
        "speech_activity (onnx)": lambda: ae.speech_segments(noisy, use_onnx=True),
        "speech_activity (jit)": lambda: ae.speech_segments(noisy, use_onnx=False),
    }
    print(f"\nCost per second of audio ({seconds:.1f} s clip, best of {repeat}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    for name, run in stages.items():
        run()  # warm-up (model loading, imports)
        walls, cpus = [], []
        for _ in range(repeat):
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        print(f"  {name:<24} {1000 * min(walls) / seconds:7.2f} ms wall  {1000 * min(cpus) / seconds:7.2f} ms cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated")
    media, ae, melspectrogram = _modules()
    try:
        clean = media.speech_16k()
    except BaseException as skipped:  # pytest.skip when pocketsphinx-testdata is missing
        raise SystemExit(f"benchmark needs real speech: {skipped}") from None
    print(f"Real speech: {len(clean) / RATE:.1f} s of LibriVox (pocketsphinx-testdata), 16 kHz")
    denoising_table(media, ae, melspectrogram, clean)
    loudness_table(media, ae, clean)
    vad_table(media, ae)
    timing_table(media, ae, clean, args.repeat)


if __name__ == "__main__":
    main()
