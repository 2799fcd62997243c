"""Builds the bundled workflows in ``workflows/``: API format (for ``/prompt`` and the runner) and UI format (for the
canvas), from the graphs below and the node schemas of a running ComfyUI (``/object_info``).

``python scripts/talkinghead.py build-workflows [--url URL]`` (default: an embedded server).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from .comfy_client import ComfyClient, ComfyServer

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / "workflows"
SAMPLE_VIDEO = "talkinghead_sample.mp4"
SAMPLE_SPEECH = "talkinghead_sample_speech.wav"


def node(class_type: str, title: str | None = None, **inputs) -> dict:
    return {"class_type": class_type, "inputs": inputs, "_meta": {"title": title or class_type}}


def _lip_sync_settings(enhanced: bool, batch_size: int) -> dict:
    """Plain: the release's settings (ddim25, seed 7, the most confident face, pads 0, whole-box 8-bit paste).
    Enhanced: 50 steps, the largest face, a 10 px chin margin (Wav2Lip's pad) and only the generated half pasted,
    since the lip-mask composite blends the mouth back anyway."""
    return dict(model=["5", 0], detector=["6", 0], quality="high" if enhanced else "balanced", custom_steps=25,
                seed=7, batch_size=batch_size, face="largest" if enhanced else "most confident", face_index=0,
                pad_top=0,
                pad_bottom=10 if enhanced else 0, pad_left=0, pad_right=0,
                paste="lower half" if enhanced else "whole box (release)", close_mouth_in_silence=enhanced,
                flow_guided_start=0.0)


def _with_enhanced_inputs(g: dict) -> dict:
    """Audio clean-up (id 4) before and Real-ESRGAN (id 8) inside the lip sync (id 7) of an enhanced graph."""
    g["4"] = node("Diff2LipAudioCleanup", "Audio Clean-up", audio=["3", 0], denoise=True, compress=False,
                  target_lufs=-23.0, offset_ms=0.0)
    g["8"] = node("Diff2LipUpscalerLoader", "Super-resolution Model", model_name="RealESRGAN_x2plus.pth",
                  backend="spandrel")
    g["7"]["inputs"]["upscale_model"] = ["8", 0]
    return g


def _diff2lip_core(enhanced: bool) -> dict:
    """Both stream: the video is decoded, lip-synced, enhanced and encoded chunk by chunk (memory independent of the
    clip's length); the IMAGE-batch nodes stay available for short clips and other packs."""
    g = {
        "1": node("TalkingHeadLoadVideoStream", "Load Video", video=SAMPLE_VIDEO, start_frame=0, frame_count=0),
        "3": node("TalkingHeadLoadAudio", "Driving Speech", audio=SAMPLE_SPEECH),
        **_diff2lip_loaders(),
        "7": node("Diff2LipLipSyncStream", "Lip Sync", stream=["1", 0], audio=["4" if enhanced else "3", 0],
                  **_lip_sync_settings(enhanced, batch_size=0), max_gap=5),
    }
    return _with_enhanced_inputs(g) if enhanced else g


def _encode(g: dict, frames_from: list, prefix: str) -> dict:
    g["14"] = node("TalkingHeadEncodeStream", "Encode Video", stream=frames_from, codec="h264", crf=18,
                   chunk_size=8)
    g["15"] = node("SaveVideo", "Save Video", video=["14", 0], filename_prefix=prefix, format="auto", codec="auto")
    return g


def _diff2lip_loaders() -> dict:
    """The model and face-detector loaders (ids 5, 6) every Diff2Lip graph shares."""
    return {
        "5": node("Diff2LipModelLoader", "Diff2Lip Model", ckpt_name="checkpoint.pt", precision="auto",
                  num_head_channels=64, compile=False),
        "6": node("Diff2LipFaceDetectorLoader", "Face Detector", detector="BlazeFace short-range (built-in)",
                  min_confidence=0.5, max_side=0),
    }


def diff2lip_plain() -> dict:
    return _encode(_diff2lip_core(enhanced=False), ["7", 0], "talkinghead/diff2lip")


def diff2lip_enhanced() -> dict:
    g = _diff2lip_core(enhanced=True)
    g.update({
        "9": node("Diff2LipLipMaskCompositeStream", "Lip-Mask Composite", stream=["7", 0], mode="lip mask",
                  expansion=1.2, feather=0.2, adaptive_gain=1.0, smooth_window=5, landmarks="FaceMesh (built-in)"),
        "10": node("Diff2LipColorMatchStream", "Colour Match", stream=["9", 0], method="lab_meanstd", band_px=8.0,
                   white_balance="off"),
        "11": node("Diff2LipTemporalSmoothStream", "Temporal Smooth", stream=["10", 0], strength=0.5,
                   method="flow (DIS)"),
        "12": node("Diff2LipDenoiseRegionStream", "Artifact Reduction", stream=["11", 0], method="bilateral",
                   strength=0.3),
        "13": node("Diff2LipSharpenStream", "Sharpen Mouth", stream=["12", 0], strength=0.3, sigma=1.0),
    })
    return _encode(g, ["13", 0], "talkinghead/diff2lip_enhanced")


def _gagavatar_inputs() -> dict:
    return {
        "1": node("GAGAvatarModelLoader", "GAGAvatar Model", ckpt_name="GAGAvatar.pt", precision="auto"),
        "2": node("GAGAvatarFLAMELoader", "FLAME", flame_name="FLAME_with_eye.pt"),
        "3": node("GAGAvatarLoadTrackedSource", "Tracked Source", source_path="gagavatar_source", frame_index=0),
        "4": node("GAGAvatarLoadTrackedDriver", "Tracked Driver", driver_path="gagavatar_driver", fps=0.0,
                  max_frames=0, output_frames=False),
        "5": node("GAGAvatarEncodeSource", "Encode Source", model=["1", 0], source=["3", 0]),
    }


def _gagavatar_render(g: dict, driver: list, frames_from: list) -> dict:
    """Streaming: rendered batch by batch while encoding (the splats of one batch at a time)."""
    g["6"] = node("GAGAvatarAnimateStream", "Animate Avatar", model=["1", 0], flame=["2", 0], avatar=["5", 0],
                  driver=driver, batch_size=1, reference_noise=False, rasterizer="auto")
    g["8"] = node("TalkingHeadEncodeStream", "Encode Video", stream=frames_from, codec="h264", crf=18, chunk_size=8)
    return g


def gagavatar_plain() -> dict:
    g = _gagavatar_render(_gagavatar_inputs(), ["4", 0], ["6", 0])
    g["9"] = node("SaveVideo", "Save Video", video=["8", 0], filename_prefix="talkinghead/gagavatar",
                  format="auto", codec="auto")
    return g


def _enhanced_driver(g: dict) -> dict:
    """The driver enhancements both enhanced GAGAvatar graphs share: smoothing, region expression, gaze (ids 10-12)."""
    g["10"] = node("GAGAvatarSmoothDriver", "Temporal Smoothing", driver=["4", 0], method="rts", ema_alpha=0.5,
                   noise_ratio=0.1)
    g["11"] = node("GAGAvatarRegionExpression", "Region-Aware Expression", driver=["10", 0], flame=["2", 0],
                   eyes_weight=0.9, brows_weight=0.9, nose_weight=0.95, mouth_weight=0.7, cheeks_jaw_weight=0.85,
                   blend=0.8)
    g["12"] = node("GAGAvatarGazeCorrect", "Gaze Correction", driver=["11", 0], flame=["2", 0], strength=0.7,
                   source=["3", 0])
    return g


def gagavatar_enhanced() -> dict:
    g = _enhanced_driver(_gagavatar_inputs())
    _gagavatar_render(g, ["12", 0], ["14", 0])
    g["13"] = node("GAGAvatarDetailEnhanceStream", "Detail Enhance", stream=["6", 0], strength=0.3, inside_alpha=True)
    g["14"] = node("GAGAvatarEyeEnhanceStream", "Eye Enhance", stream=["13", 0], driver=["12", 0], flame=["2", 0],
                   strength=0.5, source=["3", 0])
    g["9"] = node("SaveVideo", "Save Video", video=["8", 0], filename_prefix="talkinghead/gagavatar_enhanced",
                  format="auto", codec="auto")
    return g


# ----------------------------------------------------------------------------------------------------------------
# The enhanced pipelines on whole IMAGE batches, for short clips: every frame is in memory, which the whole-clip
# metrics (quality, lip-sync, artifact check, render metrics) need.


def _diff2lip_enhanced_core_images() -> dict:
    """The enhanced lip sync on a whole IMAGE batch (core Load Video), for the whole-clip metrics nodes."""
    g = {
        "1": node("LoadVideo", "Load Video", file=SAMPLE_VIDEO),
        "2": node("GetVideoComponents", "Video Components", video=["1", 0]),
        "3": node("TalkingHeadLoadAudio", "Driving Speech", audio=SAMPLE_SPEECH),
        **_diff2lip_loaders(),
        "7": node("Diff2LipLipSync", "Lip Sync", frames=["2", 0], audio=["4", 0], fps=["2", 2],
                  **_lip_sync_settings(enhanced=True, batch_size=8), sampling_mask="lower_half", max_gap=5),
    }
    return _with_enhanced_inputs(g)


def diff2lip_enhanced_images() -> dict:
    g = _diff2lip_enhanced_core_images()
    g.update({
        "9": node("Diff2LipLipMaskComposite", "Lip-Mask Composite", original=["2", 0], generated=["7", 0],
                  generated_mask=["7", 2], mode="lip mask", expansion=1.2, feather=0.2, adaptive_gain=1.0,
                  smooth_window=5, landmarks="FaceMesh (built-in)"),
        "10": node("Diff2LipColorMatch", "Colour Match", original=["2", 0], generated=["9", 0], mask=["9", 1],
                   method="lab_meanstd", band_px=8.0, white_balance="off"),
        "11": node("Diff2LipTemporalSmooth", "Temporal Smooth", frames=["10", 0], mask=["9", 1], strength=0.5,
                   method="flow (DIS)"),
        "12": node("Diff2LipDenoiseRegion", "Artifact Reduction", frames=["11", 0], mask=["9", 1],
                   method="bilateral", strength=0.3),
        "13": node("Diff2LipSharpen", "Sharpen Mouth", frames=["12", 0], mask=["9", 1], strength=0.3, sigma=1.0),
        "18": node("Diff2LipArtifactCheck", "Artifact Check", frames=["13", 0], mask=["9", 1], replace=False,
                   blockiness_limit=1.6, spike_mads=6.0),
        "14": node("CreateVideo", "Create Video", images=["18", 0], fps=["2", 2], audio=["7", 1]),
        "15": node("SaveVideo", "Save Video", video=["14", 0], filename_prefix="talkinghead/diff2lip_enhanced_images",
                   format="auto", codec="auto"),
        "16": node("Diff2LipQualityMetrics", "Quality Metrics", original=["2", 0], output=["13", 0],
                   generated_mask=["7", 2], composite_mask=["9", 1], landmarks=True),
        "17": node("Diff2LipSyncMetrics", "Lip-Sync Metrics", original=["2", 0], output=["18", 0], audio=["7", 1],
                   generated_mask=["7", 2], fps=["2", 2], syncnet="auto", composite_mask=["9", 1]),
        "19": node("PreviewImage", "Metrics Plot", images=["17", 1]),
    })
    return g


def _gagavatar_render_images(g: dict, driver: list, frames_from: list) -> dict:
    g["6"] = node("GAGAvatarAnimate", "Animate Splats", model=["1", 0], flame=["2", 0], avatar=["5", 0],
                  driver=driver, batch_size=1, rasterizer="auto")
    g["7"] = node("GAGAvatarRefine", "Refine", model=["1", 0], splats=["6", 0], reference_noise=False, batch_size=1)
    g["8"] = node("CreateVideo", "Create Video", images=frames_from, fps=["4", 2])
    return g


def gagavatar_enhanced_images() -> dict:
    g = _enhanced_driver(_gagavatar_inputs())
    _gagavatar_render_images(g, ["12", 0], ["14", 0])
    g["13"] = node("GAGAvatarDetailEnhance", "Detail Enhance", frames=["7", 0], strength=0.3, face_mask=["6", 1])
    g["14"] = node("GAGAvatarEyeEnhance", "Eye Enhance", frames=["13", 0], driver=["12", 0], flame=["2", 0],
                   strength=0.5, source=["3", 0])
    g["9"] = node("SaveVideo", "Save Video", video=["8", 0], filename_prefix="talkinghead/gagavatar_enhanced_images",
                  format="auto", codec="auto")
    # self-reenactment: the driver's own crops are the ground truth of each rendered frame
    g["15"] = node("GAGAvatarSelfReenactMetrics", "Self-Reenactment Metrics", driver_frames=["4", 1],
                   rendered=["14", 0])
    g["16"] = node("PreviewImage", "Metrics Plot", images=["15", 1])
    g["4"]["inputs"]["output_frames"] = True  # the metrics compare with the driver's own crops
    return g


SAMPLE_PORTRAIT = "talkinghead_portrait.png"


def gagavatar_from_images() -> dict:
    """Plain IMAGE inputs: a portrait and a driving video are tracked first."""
    return {
        "1": node("GAGAvatarModelLoader", "GAGAvatar Model", ckpt_name="GAGAvatar.pt", precision="auto"),
        "2": node("GAGAvatarFLAMELoader", "FLAME", flame_name="FLAME_with_eye.pt"),
        "3": node("LoadImage", "Portrait", image=SAMPLE_PORTRAIT),
        "4": node("LoadVideo", "Driving Video", file=SAMPLE_VIDEO),
        "5": node("GetVideoComponents", "Video Components", video=["4", 0]),
        "6": node("GAGAvatarTrackerLoader", "Tracker", matting="StyleMatte (released, as the reference)",
                  face_box="S3FD + FAN (as the reference)", flame=["2", 0]),
        "7": node("GAGAvatarTrackPortrait", "Track Portrait", tracker=["6", 0], image=["3", 0], steps=300),
        "8": node("GAGAvatarTrackVideo", "Track Driving Video", tracker=["6", 0], frames=["5", 0], fps=["5", 2],
                  drop_high_fps=False, steps=300, batch_size=16),
        "9": node("GAGAvatarSaveTracked", "Save Tracked Driver", driver=["8", 0], folder_name="tracked/driver"),
        "10": node("GAGAvatarEncodeSource", "Encode Source", model=["1", 0], source=["7", 0]),
        "11": node("GAGAvatarAnimate", "Animate Splats", model=["1", 0], flame=["2", 0], avatar=["10", 0],
                   driver=["8", 0], batch_size=1, rasterizer="auto"),
        "12": node("GAGAvatarRefine", "Refine", model=["1", 0], splats=["11", 0], reference_noise=False, batch_size=1),
        "13": node("CreateVideo", "Create Video", images=["12", 0], fps=["8", 2], audio=["5", 1]),
        "14": node("SaveVideo", "Save Video", video=["13", 0], filename_prefix="talkinghead/gagavatar_tracked",
                   format="auto", codec="auto"),
    }


GRAPHS = {"diff2lip": diff2lip_plain, "diff2lip_enhanced": diff2lip_enhanced, "gagavatar": gagavatar_plain,
          "diff2lip_enhanced_images": diff2lip_enhanced_images, "gagavatar_enhanced_images": gagavatar_enhanced_images,
          "gagavatar_enhanced": gagavatar_enhanced, "gagavatar_from_images": gagavatar_from_images}


def _input_specs(info: dict) -> list[tuple[str, list]]:
    order = info.get("input_order", {})
    specs = []
    for section in ("required", "optional"):
        for name in order.get(section, info["input"].get(section, {})):
            specs.append((name, info["input"][section][name]))
    return specs


def _is_widget(spec: list) -> bool:
    kind = spec[0]
    return isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def api_to_ui(prompt: dict, object_info: dict) -> dict:
    """UI-format workflow (litegraph, version 0.4) of an API prompt, laid out left to right by dependency depth."""
    depth: dict[str, int] = {}

    def depth_of(nid: str) -> int:
        if nid not in depth:
            links = [v[0] for v in prompt[nid]["inputs"].values() if isinstance(v, list)]
            depth[nid] = 1 + max((depth_of(src) for src in links), default=-1)
        return depth[nid]

    ids = sorted(prompt, key=int)
    column_rows: dict[int, int] = {}
    nodes, links = [], []
    out_links: dict[tuple[str, int], list[int]] = {}
    for nid in ids:
        for name, value in prompt[nid]["inputs"].items():
            if isinstance(value, list):
                link_id = len(links) + 1
                src, slot = value
                info = object_info[prompt[nid]["class_type"]]
                kind = dict(_input_specs(info))[name][0]
                links.append([link_id, int(src), slot, int(nid), None, kind])
                out_links.setdefault((src, slot), []).append(link_id)
    for order, nid in enumerate(sorted(ids, key=depth_of)):
        entry = prompt[nid]
        info = object_info[entry["class_type"]]
        col = depth_of(nid)
        row = column_rows.get(col, 0)
        column_rows[col] = row + 1
        inputs, widgets = [], []
        for name, spec in _input_specs(info):
            value = entry["inputs"].get(name)
            if isinstance(value, list):
                link = next(lk for lk in links if lk[3] == int(nid) and lk[4] is None)
                link[4] = len(inputs)
                slot = {"name": name, "type": spec[0] if not isinstance(spec[0], list) else "COMBO", "link": link[0]}
                if _is_widget(spec):
                    slot["widget"] = {"name": name}
                inputs.append(slot)
                if _is_widget(spec):  # a widget turned into a socket keeps its positional value
                    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                    widgets.append(options.get("default", 0))
            elif _is_widget(spec):
                widgets.append(value)
                options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if options.get("control_after_generate"):
                    widgets.append("fixed")
            elif value is None:
                inputs.append({"name": name, "type": spec[0], "link": None})
        outputs = [{"name": oname, "type": otype, "links": out_links.get((nid, i), []), "slot_index": i}
                   for i, (oname, otype) in enumerate(zip(info["output_name"], info["output"]))]
        nodes.append({"id": int(nid), "type": entry["class_type"], "title": entry["_meta"]["title"],
                      "pos": [60 + 380 * col, 60 + 260 * row], "size": [340, 220], "flags": {}, "order": order,
                      "mode": 0, "inputs": inputs, "outputs": outputs,
                      "properties": {"Node name for S&R": entry["class_type"]},
                      "widgets_values": widgets})
    return {"last_node_id": max(int(i) for i in ids), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {}, "version": 0.4}


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def build(client: ComfyClient) -> list[Path]:
    object_info = client.get("/object_info")
    written = []
    WORKFLOWS.mkdir(exist_ok=True)
    for name, make in GRAPHS.items():
        prompt = make()
        write_json(WORKFLOWS / f"{name}_api.json", prompt)
        write_json(WORKFLOWS / f"{name}.json", api_to_ui(prompt, object_info))
        written += [WORKFLOWS / f"{name}_api.json", WORKFLOWS / f"{name}.json"]
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="talkinghead.py build-workflows", description=__doc__)
    ap.add_argument("--url", help="a running ComfyUI with this pack; default: an embedded one")
    args = ap.parse_args(argv)
    if args.url:
        paths = build(ComfyClient(args.url))
    else:
        with tempfile.TemporaryDirectory() as work:
            server = ComfyServer(Path(work), REPO)
            server.prepare()
            server.start()
            try:
                paths = build(server)
            finally:
                server.stop()
    print("\n".join(str(p) for p in paths))
    return 0
