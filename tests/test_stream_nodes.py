"""Stream nodes in a real ComfyUI server: the same pixels as the IMAGE nodes for chunk sizes 1, 7 and longer than
the clip, and clear errors for unusable videos."""
from __future__ import annotations

import json

import numpy as np
import pytest

from talkinghead.pipelines.media import make_audio, write_video, write_wav

import media

pytestmark = pytest.mark.server

TINY = {"ckpt_name": "tiny_unet.pt", "precision": "fp32", "num_head_channels": 32}
LIP = {"quality": "fast", "custom_steps": 25, "seed": 7, "batch_size": 3, "face": "largest", "face_index": 0,
       "pad_top": 0, "pad_bottom": 10, "pad_left": 0, "pad_right": 0, "paste": "lower half",
       "close_mouth_in_silence": False,
       "flow_guided_start": 0.0, "max_gap": 5}
ENHANCE = [("Diff2LipLipMaskComposite", "Diff2LipLipMaskCompositeStream",
            {"mode": "lip mask", "expansion": 1.2, "feather": 0.2, "adaptive_gain": 1.0, "smooth_window": 5,
             "landmarks": "FaceMesh (built-in)"}),
           ("Diff2LipColorMatch", "Diff2LipColorMatchStream", {"method": "lab_meanstd", "band_px": 8.0}),
           ("Diff2LipTemporalSmooth", "Diff2LipTemporalSmoothStream", {"strength": 0.5, "method": "flow (DIS)"}),
           ("Diff2LipDenoiseRegion", "Diff2LipDenoiseRegionStream", {"method": "bilateral", "strength": 0.3}),
           ("Diff2LipSharpen", "Diff2LipSharpenStream", {"strength": 0.3, "sigma": 1.0})]


def _node(class_type, **inputs):
    return {"class_type": class_type, "inputs": inputs}


def _graphs(chunk_sizes) -> dict:
    """One prompt: the IMAGE chain (core Load Video -> Lip Sync -> the enhancement nodes) and, per chunk size, the
    stream chain read back with Stream to Images; Quality Metrics compares each with the IMAGE result."""
    g = {"1": _node("LoadVideo", file="stream_clip.mp4"), "2": _node("GetVideoComponents", video=["1", 0]),
         "3": _node("TalkingHeadLoadAudio", audio="stream_speech.wav"), "5": _node("Diff2LipModelLoader", **TINY),
         "6": _node("Diff2LipFaceDetectorLoader", detector="BlazeFace short-range (built-in)", min_confidence=0.5,
                    max_side=0),
         "7": _node("Diff2LipLipSync", frames=["2", 0], audio=["3", 0], fps=["2", 2], model=["5", 0],
                    detector=["6", 0], **LIP),
         "30": _node("TalkingHeadLoadVideoStream", video="stream_clip.mp4", start_frame=0, frame_count=0),
         "31": _node("Diff2LipLipSyncStream", stream=["30", 0], audio=["3", 0], model=["5", 0], detector=["6", 0],
                     **LIP)}
    image, mask, stream = ["7", 0], ["7", 2], ["31", 0]
    for k, (image_node, stream_node, settings) in enumerate(ENHANCE):
        nid, sid = str(10 + k), str(40 + k)
        if image_node == "Diff2LipLipMaskComposite":
            g[nid] = _node(image_node, original=["2", 0], generated=image, generated_mask=mask, **settings)
            mask = [nid, 1]
        elif image_node == "Diff2LipColorMatch":
            g[nid] = _node(image_node, original=["2", 0], generated=image, mask=mask, **settings)
        else:
            g[nid] = _node(image_node, frames=image, mask=mask, **settings)
        g[sid] = _node(stream_node, stream=stream, **settings)
        image, stream = [nid, 0], [sid, 0]
    for chunk in chunk_sizes:
        g[f"6{chunk}"] = _node("TalkingHeadStreamToImages", stream=stream, chunk_size=chunk)
        g[f"7{chunk}"] = _node("Diff2LipQualityMetrics", original=image, output=[f"6{chunk}", 0],
                               generated_mask=mask, landmarks=False)
    return g


def test_stream_nodes_give_the_image_nodes_pixels_for_every_chunk_size(comfy_server):
    clip = media.clip_with_missing_faces(frames=9, missing=(4,), fps=30.0, size=(160, 160))
    write_video(comfy_server.input / "stream_clip.mp4", clip.frames, 30.0, overwrite=True)
    write_wav(comfy_server.input / "stream_speech.wav", media.speech_16k(seconds=0.2), 16000, overwrite=True)
    chunk_sizes = (1, 7, 100)
    result = comfy_server.run(_graphs(chunk_sizes), timeout=900)
    assert result["messages"][-1]["type"] == "execution_success", result["messages"][-1]
    report = json.loads(result["history"]["outputs"]["7"]["text"][0])
    assert report["generated"] >= 8 and 4 in report["bridged_frames"]  # faces were synced, the gap bridged
    for chunk in chunk_sizes:
        metrics = json.loads(result["history"]["outputs"][f"7{chunk}"]["text"][0])
        assert metrics["psnr_full"] == float("inf") and metrics["max_abs_outside"] == 0.0, chunk  # bit-identical


def test_stream_sink_saves_through_core_save_video_with_the_original_audio(comfy_server):
    rate = 44100
    stereo = 0.3 * np.random.default_rng(0).standard_normal((2, rate)).astype(np.float32)
    frames = media.talking_clip(frames=10, size=(96, 128)).frames
    write_video(comfy_server.input / "with_audio.mp4", frames, 29.97, make_audio(stereo, rate), overwrite=True)
    prompt = {"1": _node("TalkingHeadLoadVideoStream", video="with_audio.mp4", start_frame=2, frame_count=5),
              "2": _node("TalkingHeadEncodeStream", stream=["1", 0], codec="h264", crf=18, chunk_size=2),
              "3": _node("SaveVideo", video=["2", 0], filename_prefix="stream/copy", format="auto", codec="auto")}
    result = comfy_server.run(prompt, timeout=300)
    assert result["messages"][-1]["type"] == "execution_success", result["messages"][-1]
    saved = result["history"]["outputs"]["3"]["images"][0]
    from talkinghead.pipelines.stream import VideoSource, probe_video

    path = comfy_server.output / saved["subfolder"] / saved["filename"]
    original = probe_video(comfy_server.input / "with_audio.mp4")
    probe = probe_video(path)
    assert probe.num_frames == 5 and probe.fps == original.fps
    audio = VideoSource(str(path)).audio
    assert audio["sample_rate"] == rate and audio["waveform"].shape[1] == 2
    assert abs(audio["waveform"].shape[-1] / rate - 5 / float(original.fps)) < 0.03


def test_unusable_videos_are_rejected_with_the_node_and_the_fix(comfy_server):
    write_wav(comfy_server.input / "only_sound.wav", np.zeros(8000, np.float32), 16000, overwrite=True)
    (comfy_server.input / "broken.mp4").write_bytes(b"\0" * 4096)
    for name, expected in (("only_sound.wav", "no video stream"), ("broken.mp4", "not a readable video")):
        prompt = {"1": _node("TalkingHeadLoadVideoStream", video=name, start_frame=0, frame_count=0),
                  "2": _node("TalkingHeadEncodeStream", stream=["1", 0], codec="h264", crf=18, chunk_size=4)}
        result = comfy_server.run(prompt, timeout=120)
        last = result["messages"][-1]
        assert last["type"] == "execution_error", last
        message = last["data"]["exception_message"]
        assert "Load Video as Stream" in message and expected in message, message
