"""Audio clean-up before Diff2Lip's mel, measured on real speech (pocketsphinx-testdata LibriVox) with added noise."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from media import add_noise, espeak_speech, librivox_files, pink_noise, silence_speech_silence, speech_16k, tone, \
    white_noise
from talkinghead.pipelines import audio_enhance as ae
from talkinghead.pipelines.diff2lip_enhance import evaluation

RATE = 16000


def _rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2))))


def test_only_the_release_mel_is_accepted():
    ae.check_mel_config(n_mels=80, sample_rate=16000)
    with pytest.raises(ValueError, match=r"80-mel 16 kHz.*n_mels=128 \(needs 80\).*sample_rate=22050"):
        ae.check_mel_config(n_mels=128, sample_rate=22050, n_fft=1024, hop_length=256)
    with pytest.raises(ValueError, match="fmax=8000"):
        ae.check_mel_config(n_mels=80, sample_rate=16000, fmax=8000)


def test_k_weighting_reproduces_the_bs1770_table_at_48k():
    (b1, a1), (b2, a2) = ae.k_weighting_filters(48000)
    np.testing.assert_allclose(b1, [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=1e-12)
    np.testing.assert_allclose(a1, [1.0, -1.69065929318241, 0.73248077421585], atol=1e-12)
    np.testing.assert_allclose(b2, [1.0, -2.0, 1.0])
    np.testing.assert_allclose(a2, [1.0, -1.99004745483398, 0.99007225036621], atol=1e-12)


@pytest.mark.parametrize("rate, tolerance", [(48000, 0.02), (44100, 0.02), (16000, 0.06)])
def test_loudness_of_a_known_sine(rate, tolerance):
    # BS.1770: a 997 Hz sine at 0 dBFS in one front channel reads -3.01 LKFS; at -20 dBFS, -23.01.
    assert abs(ae.integrated_loudness(tone(997, 3.0, 1.0, rate), rate) + 3.01) < tolerance
    assert abs(ae.integrated_loudness(tone(997, 3.0, 0.1, rate), rate) + 23.01) < tolerance


def test_loudness_gates_silence_and_quiet_passages():
    # Without gating, adding an equally long quiet half would lower the loudness by about 3 dB.
    loud = tone(997, 4.0, 0.1, RATE)
    alone = ae.integrated_loudness(loud, RATE)
    with_silence = np.concatenate([loud, np.zeros_like(loud)])  # absolute gate (-70 LUFS) drops the silence
    assert abs(ae.integrated_loudness(with_silence, RATE) - alone) < 0.2
    with_quiet = np.concatenate([loud, 0.1 * loud])  # 20 dB quieter: below the relative gate (-10 LU)
    assert abs(ae.integrated_loudness(with_quiet, RATE) - alone) < 0.2
    assert ae.integrated_loudness(np.zeros(RATE), RATE) == float("-inf")


def test_normalize_loudness_on_noisy_real_speech():
    noisy, _ = add_noise(speech_16k(8.0) * 0.2, 10.0, "pink", seed=4)
    before = ae.integrated_loudness(noisy, RATE)
    result = ae.normalize_loudness(noisy, RATE, target_lufs=-23.0)
    assert abs(before + 23.0) > 5 and abs(ae.integrated_loudness(result, RATE) + 23.0) < 0.01
    np.testing.assert_array_equal(ae.normalize_loudness(np.zeros(RATE, np.float32), RATE), np.zeros(RATE))


def test_compressor_steady_state_attack_and_release():
    quiet_amp, loud_amp = 10 ** (-30 / 20) * np.sqrt(2), 10 ** (-6 / 20) * np.sqrt(2)  # RMS -30 and -6 dBFS
    signal = np.concatenate([tone(1000, 1.0, quiet_amp), tone(1000, 1.0, loud_amp), tone(1000, 1.0, quiet_amp)])
    out = ae.compress_dynamic_range(signal, RATE, threshold_db=-20, ratio=4, attack_ms=5, release_ms=50)
    assert abs(_rms_db(out[2000:15000]) + 30) < 0.05  # below threshold: untouched
    assert abs(_rms_db(out[20000:31000]) + 16.5) < 0.1  # -20 + (-6 + 20) / 4
    assert _rms_db(out[16000:16080]) > _rms_db(out[16400:16480]) + 1.5  # attack takes a few ms
    # Release: 50 ms after the level drops, about 63 % of the 10.5 dB reduction has been given back.
    recovered = _rms_db(out[32800:32880]) + 30 + 10.5
    assert 0.5 * 10.5 < recovered < 0.8 * 10.5, recovered


def test_shift_audio_moves_sound_and_keeps_length():
    click = np.zeros(RATE, np.float32)
    click[8000] = 1.0
    later, earlier = ae.shift_audio(click, RATE, 40), ae.shift_audio(click, RATE, -40)
    assert len(later) == len(earlier) == RATE
    assert int(np.argmax(later)) == 8640 and int(np.argmax(earlier)) == 7360
    assert not ae.shift_audio(click, RATE, 600).any() and np.array_equal(ae.shift_audio(click, RATE, 0), click)


@pytest.mark.parametrize("kind, min_snr_gain, min_seg_gain", [("white", 5.0, 5.0), ("pink", 3.0, 3.0)])
def test_spectral_subtraction_improves_noisy_real_speech(kind, min_snr_gain, min_seg_gain):
    clean = speech_16k(12.0)
    noisy, noise = add_noise(clean, 5.0, kind, seed=1)
    cleaned = ae.spectral_subtract(noisy, RATE)
    assert cleaned.shape == clean.shape and cleaned.dtype == np.float32
    snr_gain = evaluation.snr_db(clean, cleaned) - evaluation.snr_db(clean, noisy)
    seg_gain = evaluation.segmental_snr_db(clean, cleaned) - evaluation.segmental_snr_db(clean, noisy)
    assert snr_gain > min_snr_gain and seg_gain > min_seg_gain, (snr_gain, seg_gain)
    # What the model sees: the release mel of the cleaned audio is closer to the clean speech's mel.
    from talkinghead.pipelines.diff2lip.audio import melspectrogram

    target = melspectrogram(clean)
    mel_error = lambda wav: float(np.abs(melspectrogram(wav) - target).mean())  # noqa: E731
    assert mel_error(cleaned) < 0.7 * mel_error(noisy), (mel_error(cleaned), mel_error(noisy))
    # A separate noise sample (e.g. the room before anyone speaks) works as the profile too.
    with_profile = ae.spectral_subtract(noisy, RATE, noise=noise[:RATE])
    assert evaluation.snr_db(clean, with_profile) - evaluation.snr_db(clean, noisy) > min_snr_gain


def _voiced_span(speech: np.ndarray) -> tuple[float, float]:
    """First and last 20 ms frame within 20 dB of the loudest one: the reading without its room-tone edges."""
    frames = speech[: len(speech) // 320 * 320].reshape(-1, 320)
    level = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    voiced = np.flatnonzero(level > level.max() - 20)
    return voiced[0] * 0.02, (voiced[-1] + 1) * 0.02


def test_speech_activity_on_silence_speech_silence_with_noise():
    threads = torch.get_num_threads()
    import soundfile

    speech = soundfile.read(str(librivox_files()[2]), dtype="float32")[0]
    wav, (start, _) = silence_speech_silence(speech, lead_s=1.5, tail_s=1.5)
    wav = wav + white_noise(len(wav) / RATE, rms=0.1 * float(speech.std()), seed=3)  # 20 dB below the speech
    on, off = (start + t for t in _voiced_span(speech))
    fps, count = 25.0, int(len(wav) / RATE * 25)
    active = ae.speech_activity(wav, fps, count)
    times = np.arange(count) / fps
    truth = (times < off) & (times + 1 / fps > on)
    assert active.dtype == bool and active.shape == (count,)
    assert np.mean(active == truth) > 0.9, np.mean(active == truth)
    far = (times + 1 / fps < on - 0.3) | (times > off + 0.3)
    assert not active[far].any()  # noise-only stretches never count as speech
    assert torch.get_num_threads() == threads  # silero_vad's import-time set_num_threads(1) is undone


def test_no_speech_in_noise_and_pauses_are_found():
    for noise in (white_noise(3.0, 0.03, seed=5), pink_noise(3.0, 0.05, seed=6)):
        assert not ae.speech_activity(noise, 25, 75).any()
    sentence = espeak_speech("The quick brown fox jumps over the lazy dog.")
    gap = np.zeros(RATE, np.float32)
    wav = np.concatenate([gap, sentence, gap, sentence, gap])
    active = ae.speech_activity(wav, 25, int(len(wav) / RATE * 25))
    second_gap = slice(int((1 + len(sentence) / RATE) * 25) + 5, int((2 + len(sentence) / RATE) * 25) - 5)
    assert not active[:20].any() and not active[second_gap].any()
    assert active.mean() > 0.5


def test_enhance_chain():
    clean = speech_16k(6.0)
    noisy, _ = add_noise(clean * 0.1, 5.0, "white", seed=7)
    np.testing.assert_array_equal(ae.enhance_speech(noisy), noisy)
    full = ae.enhance_speech(noisy, denoise=True, compress=True, target_lufs=-23.0, offset_ms=20.0)
    assert full.shape == noisy.shape and not full[:320].any()  # 20 ms of leading silence from the offset
    assert abs(ae.integrated_loudness(full, RATE) + 23.0) < 0.2
    # Compression alone keeps the input's loudness but narrows the spread of speech levels (50 ms blocks).
    compressed = ae.enhance_speech(clean * 0.1, compress=True)
    assert abs(ae.integrated_loudness(compressed, RATE) - ae.integrated_loudness(clean * 0.1, RATE)) < 0.01

    def level_spread(wav):
        blocks = 10 * np.log10(np.mean(wav[: len(wav) // 800 * 800].reshape(-1, 800) ** 2, axis=1) + 1e-12)
        blocks = blocks[blocks > blocks.max() - 40]
        return np.percentile(blocks, 95) - np.percentile(blocks, 10)

    assert level_spread(compressed) < level_spread(clean) - 4, (level_spread(compressed), level_spread(clean))

    def scale_invariant_snr(estimate):
        scale = np.dot(estimate, clean) / np.dot(clean, clean)
        return 10 * np.log10(np.sum((scale * clean) ** 2) / np.sum((estimate - scale * clean) ** 2))

    denoised = ae.enhance_speech(noisy, denoise=True, target_lufs=-23.0)
    assert scale_invariant_snr(denoised) > scale_invariant_snr(noisy) + 3


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_vad_backends_agree():
    speech = speech_16k(6.0, start_clip=1)
    onnx = ae.speech_segments(speech, use_onnx=True)
    jit = ae.speech_segments(speech, use_onnx=False)
    assert len(onnx) >= 1 and len(onnx) == len(jit)
    assert np.abs(np.array(onnx) - np.array(jit)).max() < 0.04
