"""Frame streams: identical pixels to the whole-clip (IMAGE) path for any chunk size, gap bridging, the video source
and the encoding sink (pipeline level; the server-level checks are in test_stream_nodes.py)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from talkinghead.pipelines.diff2lip import lipsync, smooth_boxes
from talkinghead.pipelines.diff2lip.tracks import BoxTrack, track_boxes
from talkinghead.pipelines.diff2lip_enhance import (denoise_region, flow_temporal_smooth, lip_composite_masks,
                                                    match_color, sharpen_region)
from talkinghead.pipelines.diff2lip_enhance.lip_mask import composite
from talkinghead.pipelines.media import fit_audio_to_frames, make_audio, write_video, write_wav
from talkinghead.pipelines.stream import ArraySource, FrameStream, VideoError, VideoSource, encode_stream, probe_video
from talkinghead.pipelines.stream.diff2lip import (ColorMatchStage, DenoiseStage, LipMaskCompositeStage, LipSyncStage,
                                                   SharpenStage, TemporalSmoothStage)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHUNK_SIZES = (1, 7, 1000)  # one frame, a size that does not divide the clip, longer than the clip


# --- boxes: streaming smoothing and gap bridging ----------------------------------------------------------------

def _reference_boxes(faces, hw, pads, window, max_gap):
    """Independent form of the rule: fill short inner gaps by linear interpolation, then smooth_boxes per run."""
    faces = list(faces)
    found = [i for i, f in enumerate(faces) if f is not None]
    bridged = []
    for a, b in zip(found, found[1:]):
        if 1 < b - a <= max_gap + 1:
            for g in range(a + 1, b):
                t = (g - a) / (b - a)
                faces[g] = tuple(x + (y - x) * t for x, y in zip(faces[a][:4], faces[b][:4]))
                bridged.append(g)
    boxes, run = {}, []
    for i, face in enumerate(faces + [None]):
        if face is not None:
            run.append(i)
        elif run:
            boxes.update(zip(run, smooth_boxes([faces[j][:4] for j in run], hw, pads, window)))
            run = []
    return boxes, bridged


@pytest.mark.parametrize("max_gap", [0, 1, 3, 5])
def test_box_track_matches_the_whole_clip_rule(max_gap):
    rng = np.random.default_rng(max_gap)
    for trial in range(40):
        n = int(rng.integers(1, 40))
        faces = []
        for i in range(n):
            if rng.random() < 0.3:
                faces.append(None)
            else:
                x, y = rng.uniform(0, 60, 2)
                faces.append((x, y, x + rng.uniform(5, 40), y + rng.uniform(5, 40), 0.9))
        expected, expected_bridged = _reference_boxes(faces, (80, 100), (1, 10, 2, 3), 5, max_gap)
        boxes, bridged = track_boxes(faces, (80, 100), (1, 10, 2, 3), 5, max_gap)
        assert sorted(boxes) == sorted(expected) and bridged == expected_bridged
        for i in boxes:
            assert np.array_equal(boxes[i], expected[i]), (trial, i)


def test_box_track_gives_each_box_as_soon_as_it_is_final():
    track = BoxTrack((100, 100), window=3, max_gap=2)
    face = (10, 10, 50, 50, 1.0)
    assert track.push(0, face) == [] and track.push(1, face) == []
    assert [r[0] for r in track.push(2, face)] == [0]  # frame 0 has its 3-frame window
    assert track.push(3, None) == [] and track.push(4, None) == []  # a gap of 2 may still be bridged
    released = track.push(5, face)  # bridged: 3 and 4 join the run
    assert [r[0] for r in released] == [1, 2, 3] and released[-1][2] is True
    assert track.push(6, None) == [] and track.push(7, None) == []
    released = track.push(8, None)  # a third missing frame: the gap is too long, the run closes
    assert [(r[0], r[1] is None, r[2]) for r in released] == [(4, False, True), (5, False, False), (6, True, False),
                                                             (7, True, False), (8, True, False)]
    assert track.finish() == []


# --- lip sync and the enhancement stages: same pixels for every chunk size ----------------------------------------

FACE = (20, 14, 76, 66)


def _marked_clip(n=11, height=72, width=96, missing=(4, 8, 9)):
    """Random frames whose top-left pixel tells the fake detector where the face is (0 = no face)."""
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8)
    for i in range(n):
        frames[i, 0, 0] = 0 if i in missing else 10 + 7 * i
    floats = (torch.from_numpy(frames) / 255.0).numpy()  # as ComfyUI's video loader gives IMAGE
    # Longer than the clip: the stage (as the lip sync node) fits it to the video, so the whole-clip call gets it fitted
    wav = 0.4 * np.sin(2 * np.pi * 220 * np.arange(int(16000 * n / 25) + 1234) / 16000).astype(np.float32)
    return floats, wav


def _fitted(wav, n):
    return fit_audio_to_frames(wav, 16000, n, 25.0)


def marked_detect(frame):
    shift = int(frame[0, 0, 0])
    if shift == 0:
        return []
    dx = (shift % 9) - 4
    x1, y1, x2, y2 = FACE
    return [(x1 + dx, y1, x2 + dx, y2, 0.99)]


def _stream_arrays(stream: FrameStream, chunk_size: int):
    reports = []
    frames, masks = stream.to_arrays(chunk_size, reports=reports)
    return frames, masks, reports


@pytest.mark.parametrize("max_gap", [0, 1, 2])
def test_streamed_lip_sync_equals_the_whole_clip(tiny, max_gap):
    frames, wav = _marked_clip()
    expected, expected_mask, report = lipsync(frames, _fitted(wav, len(frames)), 25.0, tiny, marked_detect, steps=2,
                                              seed=7, batch_size=3, pads=(0, 10, 0, 0), max_gap=max_gap)
    # frame 4 is a gap of one between detections, 8-9 a gap of two (10 has a face)
    assert report["bridged_frames"] == {0: [], 1: [4], 2: [4, 8, 9]}[max_gap]
    assert report["generated"] == 8 + len(report["bridged_frames"])
    stage = LipSyncStage(audio=make_audio(wav, 16000), model=tiny, detect=marked_detect, steps=2, seed=7,
                         batch_size=3, pads=(0, 10, 0, 0), max_gap=max_gap)
    stream = FrameStream(ArraySource(frames, Fraction(25))).then(stage)
    for chunk_size in CHUNK_SIZES:
        out, masks, reports = _stream_arrays(stream, chunk_size)
        assert np.array_equal(out, expected), chunk_size
        assert np.array_equal(masks["generated"], expected_mask), chunk_size
        assert reports[0]["lip_sync"]["bridged_frames"] == report["bridged_frames"]
        assert reports[0]["lip_sync"]["generated"] == report["generated"]


def test_streamed_lip_sync_with_the_release_paste_equals_the_whole_clip(tiny):
    frames, wav = _marked_clip(n=8, missing=(5,))
    expected, expected_mask, _ = lipsync(frames, _fitted(wav, 8), 25.0, tiny, marked_detect, steps=2, batch_size=3,
                                         paste_whole_box=True, max_gap=5)
    stage = LipSyncStage(audio=make_audio(wav, 16000), model=tiny, detect=marked_detect, steps=2, batch_size=3,
                         paste_whole_box=True, max_gap=5)
    for chunk_size in CHUNK_SIZES:
        out, masks, _ = _stream_arrays(FrameStream(ArraySource(frames, Fraction(25))).then(stage), chunk_size)
        assert np.array_equal(out, expected) and np.array_equal(masks["generated"], expected_mask), chunk_size


def test_streamed_lip_sync_with_flow_start_equals_the_whole_clip(tiny):
    frames, wav = _marked_clip(n=6, missing=(3,))
    expected, _, _ = lipsync(frames, _fitted(wav, len(frames)), 25.0, tiny, marked_detect, steps=4, batch_size=3, flow_start=0.5)
    stage = LipSyncStage(audio=make_audio(wav, 16000), model=tiny, detect=marked_detect, steps=4, batch_size=3,
                         flow_start=0.5)
    for chunk_size in CHUNK_SIZES:
        out, _, _ = _stream_arrays(FrameStream(ArraySource(frames, Fraction(25))).then(stage), chunk_size)
        assert np.array_equal(out, expected), chunk_size


def fake_landmarker(frames, region_mask=None, progress=None):
    """FaceMesh-layout points from each frame's content (so original and generated frames differ), none where the
    frame's mean is dark."""
    count = len(frames)
    points = np.full((count, 468, 2), np.nan, np.float32)
    found = np.zeros(count, bool)
    grid = np.random.default_rng(5).uniform(30, 60, (468, 2)).astype(np.float32)
    for i, frame in enumerate(frames):
        if float(frame[80:, 90:].mean()) > 0.2:  # outside the generated region: dark frames have "no face"
            points[i] = grid * (0.8 + 0.4 * float(frame[30:60, 30:60].mean()))
            found[i] = True
    return points, found


def test_streamed_enhancement_chain_equals_the_whole_clip(tiny):
    frames, wav = _marked_clip(n=10, height=96, width=112)
    marker = frames[6, 0, 0].copy()
    frames[6] *= 0.1  # no landmarks there: the composite falls back to the hard box
    frames[6, 0, 0] = marker
    synced, region, _ = lipsync(frames, _fitted(wav, len(frames)), 25.0, tiny, marked_detect, steps=2, batch_size=4)
    masks, info = lip_composite_masks(frames, synced, region, adaptive_gain=1.0, smooth_window=5,
                                      landmarker=fake_landmarker)
    assert 0 < info["num_fallback"] < len(frames)
    expected = composite(frames, synced, region, masks)
    expected = match_color(frames, expected, masks)
    expected = flow_temporal_smooth(expected, masks, 0.5)
    expected = denoise_region(expected, masks, "bilateral", 0.3)
    expected = sharpen_region(expected, masks, 0.3, 1.0)
    stream = FrameStream(ArraySource(frames, Fraction(25))).then(
        LipSyncStage(audio=make_audio(wav, 16000), model=tiny, detect=marked_detect, steps=2, batch_size=4))
    for stage in (LipMaskCompositeStage(landmarker=fake_landmarker, adaptive_gain=1.0, smooth_window=5),
                  ColorMatchStage(), TemporalSmoothStage(0.5), DenoiseStage("bilateral", 0.3), SharpenStage(0.3, 1.0)):
        stream = stream.then(stage)
    for chunk_size in CHUNK_SIZES:
        out, out_masks, _ = _stream_arrays(stream, chunk_size)
        assert np.array_equal(out_masks["composite"], masks), chunk_size
        assert np.array_equal(out, expected), chunk_size


def test_stream_is_replayable_and_signed_by_its_settings(tiny):
    frames, wav = _marked_clip(n=4, missing=())
    source = ArraySource(frames, Fraction(25))
    a = FrameStream(source).then(SharpenStage(0.3, 1.0))
    assert a.signature() == FrameStream(source).then(SharpenStage(0.3, 1.0)).signature()
    assert a.signature() != FrameStream(source).then(SharpenStage(0.4, 1.0)).signature()
    first = [item.index for chunk in a.chunks(3) for item in chunk]
    assert first == [item.index for chunk in a.chunks(3) for item in chunk] == [0, 1, 2, 3]
    assert [item.index for chunk in a.chunks(2, start=2) for item in chunk] == [2, 3]


# --- video source and sink ----------------------------------------------------------------------------------------

def _gradient_frames(n, height=48, width=64):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([np.dstack([(x * 4 + 9 * i) % 256, (y * 5) % 256, np.full_like(x, 20 * i % 256)])
                     for i in range(n)]).astype(np.uint8)


@pytest.fixture
def clip_file(tmp_path):
    rate = 44100
    stereo = np.stack([np.sin(np.arange(rate) / 20.0), np.cos(np.arange(rate) / 30.0)]).astype(np.float32) * 0.3
    return write_video(tmp_path / "clip.mp4", _gradient_frames(12), 25.0, make_audio(stereo, rate), crf=10)


def test_video_source_decodes_like_comfyui_and_cuts_ranges(clip_file):
    import av

    with av.open(str(clip_file)) as container:  # ComfyUI core's own decoding
        core = torch.stack([torch.from_numpy(f.to_ndarray(format="rgb24")) / 255.0
                            for f in container.decode(video=0)]).numpy()
    source = VideoSource(str(clip_file))
    info = source.info()
    assert (info.num_frames, info.width, info.height, info.fps) == (12, 64, 48, Fraction(25))
    assert np.array_equal(np.stack(list(source.frames())), core)
    part = VideoSource(str(clip_file), start_frame=5, frame_count=4)
    assert np.array_equal(np.stack(list(part.frames())), core[5:9])
    assert part.info().audio["waveform"].shape == (1, 2, 4 * 44100 // 25)
    assert np.array_equal(np.stack([i.image for c in FrameStream(part).chunks(3, start=1) for i in c]), core[6:9])


@pytest.mark.parametrize("fps", [Fraction(24000, 1001), Fraction(30000, 1001), Fraction(50), Fraction(60)])
def test_sink_keeps_exact_fps_frame_count_and_original_audio(tmp_path, fps):
    frames = _gradient_frames(9)
    rate = 48000
    seconds = 9 / fps
    stereo = 0.2 * np.random.default_rng(0).standard_normal((2, int(rate * seconds) - 700)).astype(np.float32)
    source = ArraySource((torch.from_numpy(frames) / 255.0).numpy(), fps, make_audio(stereo, rate))
    path, report = encode_stream(FrameStream(source), tmp_path / "out.mp4", crf=0, chunk_size=4)
    probe = probe_video(path)
    assert (probe.fps, probe.num_frames) == (fps, 9)
    assert report["audio"]["sample_rate"] == rate and report["audio"]["channels"] == 2
    assert report["audio"]["padded_seconds"] == pytest.approx(700 / rate, abs=1e-4)
    audio = VideoSource(str(path)).audio
    assert audio["sample_rate"] == rate and audio["waveform"].shape[1] == 2


def test_lossless_sink_round_trips_pixels(tmp_path):
    frames = _gradient_frames(5)
    source = ArraySource((torch.from_numpy(frames) / 255.0).numpy(), Fraction(25))
    path, _ = encode_stream(FrameStream(source), tmp_path / "lossless.mp4", codec="h264 lossless (RGB)")
    decoded = np.stack(list(VideoSource(str(path)).frames()))
    assert np.array_equal(np.rint(decoded * 255).astype(np.uint8), frames)


def test_cancelled_sink_leaves_no_file(tmp_path):
    source = ArraySource((torch.from_numpy(_gradient_frames(9)) / 255.0).numpy(), Fraction(25))

    def cancel(done, total):
        if done >= 4:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        encode_stream(FrameStream(source), tmp_path / "out.mp4", chunk_size=4, progress=cancel)
    assert list(tmp_path.iterdir()) == []


def test_bad_videos_give_clear_errors(tmp_path, clip_file):
    with pytest.raises(VideoError, match="not found"):
        probe_video(tmp_path / "missing.mp4")
    wav = write_wav(tmp_path / "speech.wav", np.zeros(1600, np.float32), 16000)
    with pytest.raises(VideoError, match="no video stream"):
        probe_video(wav)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 5000)
    with pytest.raises(VideoError, match="not a readable video"):
        probe_video(junk)
    data = clip_file.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(VideoError):
        source = VideoSource(str(truncated))
        list(source.frames())
        assert source.num_frames == 12  # a truncated file that still decodes must give every announced frame
    with pytest.raises(VideoError, match="past the last frame"):
        VideoSource(str(clip_file), start_frame=12).info()


def test_one_frame_clip_and_no_audio(tmp_path):
    path = write_video(tmp_path / "one.mp4", _gradient_frames(1), 25.0)
    source = VideoSource(str(path))
    assert source.info().num_frames == 1 and source.info().audio is None
    out, report = encode_stream(FrameStream(source), tmp_path / "copy.mp4")
    assert probe_video(out).num_frames == 1 and report["audio"] is None


def test_variable_frame_rate_clip_is_refused_with_the_fix(tmp_path):
    import av

    path = tmp_path / "vfr.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        for k, ms in enumerate([0, 40, 80, 200, 240, 400, 440, 480]):  # frames held for 1 to 4 durations
            frame = av.VideoFrame.from_ndarray(_gradient_frames(8)[k], format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(VideoError, match="variable frame rate.*-fps_mode cfr"):
        probe_video(path)


def test_a_still_image_is_a_one_frame_stream(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "still.png"), _gradient_frames(1)[0][..., ::-1])
    source = VideoSource(str(tmp_path / "still.png"))
    frames = list(source.frames())
    assert len(frames) == 1 and np.array_equal(np.rint(frames[0] * 255).astype(np.uint8), _gradient_frames(1)[0])


def test_streamed_hard_box_composite_equals_the_whole_clip(tiny):
    frames, wav = _marked_clip(n=6, missing=(2,))
    synced, region, _ = lipsync(frames, _fitted(wav, 6), 25.0, tiny, marked_detect, steps=2, batch_size=4)
    expected = composite(frames, synced, region, region)
    stream = FrameStream(ArraySource(frames, Fraction(25))).then(
        LipSyncStage(audio=make_audio(wav, 16000), model=tiny, detect=marked_detect, steps=2, batch_size=4)).then(
        LipMaskCompositeStage(landmarker=fake_landmarker, hard_box=True))
    for chunk_size in (1, 4):
        out, masks, _ = _stream_arrays(stream, chunk_size)
        assert np.array_equal(out, expected) and np.array_equal(masks["composite"], region), chunk_size


def test_a_range_late_in_a_clip_seeks_and_gives_the_same_frames(tmp_path):
    import av

    path = tmp_path / "gop.mp4"  # key frame every 4 frames, with B-frames: seeking lands before the range
    frames = _gradient_frames(30)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"g": "4", "bf": "2", "crf": "20"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for k, image in enumerate(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    every = np.stack(list(VideoSource(str(path)).frames()))
    assert len(every) == 30
    for first, count in ((1, 3), (13, 5), (22, 0), (29, 1)):
        part = np.stack(list(VideoSource(str(path), first, count).frames()))
        assert np.array_equal(part, every[first:first + (count or 30)]), (first, count)
    assert np.array_equal(np.stack(list(VideoSource(str(path), 10, 10).frames(start=6))), every[16:20])
