"""Audio shaping and atomic H.264/AAC video and WAV I/O, on real photos and real speech."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from media import photo, speech_16k, talking_clip, tone
from talkinghead.pipelines import media


def _peak_hz(signal: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / rate)[np.argmax(spectrum)])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


def test_audio_to_mono_mixes_and_resamples_without_moving_onsets():
    rate = 44100
    left, right = tone(1000, 1.0, 0.4, rate), tone(1000, 1.0, 0.2, rate)
    click = np.zeros_like(left)
    click[22050] = 1.0  # at exactly 0.5 s
    stereo = torch.from_numpy(np.stack([left + click, right + click]))[None]  # [1, 2, T]
    mono = media.audio_to_mono(stereo, rate)
    assert mono.dtype == np.float32 and mono.shape == (16000,)
    assert abs(_peak_hz(mono[:7000], 16000) - 1000) < 3
    assert abs(np.sqrt(2) * mono[1000:7000].std() - 0.3) < 0.003  # mean of 0.4 and 0.2 amplitude
    residual = mono - media.audio_to_mono(np.stack([left, right]), rate)
    assert abs(int(np.argmax(np.abs(residual))) - 8000) <= 1  # the click stays at 0.5 s (no filter delay)
    with pytest.raises(ValueError, match="batch 1"):
        media.audio_to_mono(torch.zeros(2, 1, 100), rate)
    pcm = (tone(440, 0.1, 0.5) * 32767).astype(np.int16)  # integer PCM is scaled to -1..1
    assert abs(np.abs(media.audio_to_mono(pcm, 16000)).max() - 0.5) < 1e-3


def test_resampling_round_trip_keeps_real_speech():
    speech = speech_16k(3.0)
    up = media.audio_to_mono(speech, 16000, 48000)
    back = media.audio_to_mono(up, 48000, 16000)
    snr = 10 * np.log10(np.sum(speech ** 2) / np.sum((speech - back) ** 2))
    assert len(up) == 144000 and len(back) == len(speech) and snr > 40, snr
    # librosa.load(sr=16000), the reference's loader, resamples with soxr_hq on librosa 0.11: we agree to > 50 dB.
    import librosa

    at_44k = librosa.resample(speech, orig_sr=16000, target_sr=44100, res_type="soxr_hq")
    reference = librosa.resample(at_44k, orig_sr=44100, target_sr=16000, res_type="soxr_hq")
    ours = media.audio_to_mono(at_44k, 44100)
    agreement = 10 * np.log10(np.sum(reference ** 2) / np.sum((ours - reference) ** 2))
    assert agreement > 50, agreement


def test_fit_audio_to_frames_trims_and_pads_in_comfy_layout():
    waveform = torch.ones(1, 2, 10000)
    fitted = media.fit_audio_to_frames(waveform, 16000, num_frames=12, fps=25)
    assert isinstance(fitted, torch.Tensor) and fitted.shape == (1, 2, 7680) and bool((fitted == 1).all())
    padded = media.fit_audio_to_frames(waveform, 16000, num_frames=25, fps=25)
    assert padded.shape == (1, 2, 16000) and padded[..., :10000].min() == 1 and padded[..., 10000:].abs().max() == 0
    ntsc = media.fit_audio_to_frames(np.ones((1, 1, 100)), 48000, num_frames=30, fps=30000 / 1001)
    assert isinstance(ntsc, np.ndarray) and ntsc.shape == (1, 1, 48048)


def test_video_round_trip_with_audio(tmp_path):
    clip = talking_clip(frames=12, size=(127, 161))  # odd sizes on purpose
    rate = 16000
    sound = tone(440, 12 / 25, 0.3, rate)
    sound[4000:4080] += 0.5  # a 5 ms burst at 0.25 s to check audio/video alignment
    path = media.write_video(tmp_path / "clip.mp4", clip.frames, 25, media.make_audio(sound, rate))
    frames, fps, audio = media.read_video(path)
    assert frames.shape == (12, 128, 162, 3) and fps == 25.0
    assert _psnr(frames[:, :127, :161], clip.frames) > 35
    decoded = audio["waveform"][0, 0].numpy()
    assert audio["sample_rate"] == rate and decoded.shape == sound.shape  # AAC padding trimmed
    assert abs(_peak_hz(decoded[:3900], rate) - 440) < 5
    onset = int(np.argmax(np.abs(decoded - tone(440, 12 / 25, 0.3, rate)) > 0.2))
    assert abs(onset - 4000) < 32, onset  # within 2 ms


def test_writers_never_overwrite_unless_asked_and_leave_no_temp_files(tmp_path):
    frames = talking_clip(frames=3, size=(64, 64)).frames
    first = media.write_video(tmp_path / "out.mp4", frames, 25)
    original = first.read_bytes()
    second = media.write_video(tmp_path / "out.mp4", frames[::-1], 25)
    assert second.name == "out_0001.mp4" and first.read_bytes() == original
    replaced = media.write_video(tmp_path / "out.mp4", frames[:1], 25, overwrite=True)
    assert replaced == first and first.read_bytes() != original
    # ComfyUI IMAGE (torch float 0..1) and torch uint8 frames are accepted too (64 px yuv420p: about 32 dB).
    for given in (torch.from_numpy(frames).float() / 255, torch.from_numpy(frames)):
        written = media.read_video(media.write_video(tmp_path / "torch.mp4", given, 25, overwrite=True))[0]
        assert _psnr(written, frames) > 29

    def cancel(done, total):
        if done == 2:
            raise KeyboardInterrupt("cancelled by the user")

    with pytest.raises(KeyboardInterrupt):
        media.write_video(tmp_path / "cancelled.mp4", frames, 25, progress=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "out_0001.mp4", "torch.mp4"]


def test_wav_round_trip_and_audio_from_video(tmp_path):
    speech = speech_16k(1.0)
    wav = media.write_wav(tmp_path / "speech.wav", np.stack([speech, -speech]), 16000)
    audio = media.read_audio(wav)
    assert audio["waveform"].shape == (1, 2, 16000) and audio["sample_rate"] == 16000
    np.testing.assert_allclose(audio["waveform"][0, 0].numpy(), speech, atol=1 / 32768 + 1e-7)
    assert media.write_wav(tmp_path / "speech.wav", speech, 16000).name == "speech_0001.wav"
    video = media.write_video(tmp_path / "talk.mp4", np.stack([photo()[::4, ::4]] * 25), 25,
                              media.make_audio(speech, 16000))
    from_video = media.read_audio(video)  # soundfile cannot open mp4: PyAV path
    assert from_video["waveform"].shape == (1, 1, 16000)
    with pytest.raises(FileNotFoundError, match="nothing.wav"):
        media.read_audio(tmp_path / "nothing.wav")


def test_test_media_helpers_are_real_and_deterministic():
    clip = talking_clip(frames=6, size=(96, 128), seed=3)
    assert clip.frames.shape == (6, 96, 128, 3) and clip.frames.dtype == np.uint8
    assert np.array_equal(clip.frames, talking_clip(frames=6, size=(96, 128), seed=3).frames)
    assert clip.frames.std(axis=0).mean() > 1.0  # there is motion
    speech = speech_16k()
    assert speech.dtype == np.float32 and 24.0 < len(speech) / 16000 < 25.5 and 0.01 < speech.std() < 0.5
