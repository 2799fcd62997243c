"""Diff2Lip enhancement nodes: audio clean-up and the post-processing stages on generated frames + mask."""
from __future__ import annotations

import json

import torch
from comfy_api.latest import io

from .common import image_to_numpy, log, mask_to_numpy, numpy_to_image, progress_callback, torch_device
from .guards import check_audio, check_finite
from .help_text import schema
from .paths import model_files, resolve_model_file

ENHANCE = "TalkingHead/Diff2Lip/enhance"
FACEMESH = "FaceMesh (built-in)"


# Settings inputs of each enhancement stage, defined once for the IMAGE node and its stream form (nodes/stream_nodes.py).
def lip_mask_settings() -> list:
    from ..pipelines.diff2lip_enhance import lip_mask as defaults

    return [
        io.Combo.Input("mode", options=["lip mask", "hard box"], default="lip mask",
                       tooltip="'hard box' = the plain generated region (the reference's paste)."),
        io.Float.Input("expansion", default=defaults.DEFAULT_EXPANSION, min=0.5, max=3.0, step=0.05,
                       tooltip="Lip polygon scale around its centre."),
        io.Float.Input("feather", default=defaults.DEFAULT_FEATHER, min=0.0, max=1.0, step=0.01,
                       tooltip="Soft edge width as a fraction of the mouth width."),
        io.Float.Input("adaptive_gain", default=defaults.DEFAULT_ADAPTIVE_GAIN, min=0.0, max=5.0, step=0.1,
                       tooltip="How much the expansion grows with the mouth-opening ratio (0 = fixed)."),
        io.Int.Input("smooth_window", default=defaults.DEFAULT_SMOOTH_WINDOW, min=1, max=31,
                     tooltip="Frames over which the opening ratio is smoothed."),
        io.Combo.Input("landmarks", options=[FACEMESH, *model_files("face_detection")], default=FACEMESH,
                       tooltip="Lip landmarks: MediaPipe FaceMesh (built in), or face-alignment's 68-point "
                               "FAN (2DFAN4-11f355bf06.pth.tar in models/face_detection)."),
    ]


def color_match_settings() -> list:
    return [
        io.Combo.Input("method", options=["lab_meanstd", "histogram", "none"], default="lab_meanstd",
                       tooltip="Lab mean/std transfer, per-channel Lab histogram matching, or none "
                               "(white balance only)."),
        io.Float.Input("band_px", default=8.0, min=1.0, max=64.0, step=1.0,
                       tooltip="Width of the comparison band along the mask edge."),
        io.Combo.Input("white_balance", options=["off", "gray_world", "shades_of_gray"], default="off",
                       optional=True,
                       tooltip="Before the transfer: scale the region's RGB so its illuminant (gray "
                               "world, or shades of gray p=6, on the band) equals the original's."),
    ]


TEMPORAL_METHODS = {"flow (DIS)": "dis", "flow (Farneback)": "farneback", "plain EMA": "ema"}


def temporal_settings() -> list:
    return [
        io.Float.Input("strength", default=0.5, min=0.0, max=1.0, step=0.05,
                       tooltip="Weight of the warped previous frame."),
        io.Combo.Input("method", options=["flow (DIS)", "flow (Farneback)", "plain EMA"],
                       default="flow (DIS)", tooltip="Plain EMA is kept for comparison: it ghosts motion."),
    ]


def denoise_settings() -> list:
    return [
        io.Combo.Input("method", options=["bilateral", "nlm", "guided"], default="bilateral",
                       tooltip="bilateral (fast), non-local means (strongest, slower) or guided filter."),
        io.Float.Input("strength", default=0.5, min=0.0, max=1.0, step=0.05,
                       tooltip="Filter range: higher removes more noise (bypass the node to disable)."),
    ]


def sharpen_settings() -> list:
    return [
        io.Float.Input("strength", default=0.3, min=0.0, max=1.0, step=0.05,
                       tooltip="Unsharp amount; 0 leaves the frames unchanged."),
        io.Float.Input("sigma", default=1.0, min=0.3, max=5.0, step=0.1,
                       tooltip="Blur radius of the unsharp mask (size of the detail boosted)."),
    ]


class Diff2LipAudioCleanup(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            search_aliases=["denoise audio", "speech enhancement", "loudness", "lipsync"],
            node_id="Diff2LipAudioCleanup",
            display_name="Diff2Lip Audio Clean-up",
            category=ENHANCE,
            description="Cleans speech before lip sync (the model itself always gets the release's 80-mel 16 kHz "
                        "features): spectral-subtraction denoise, compression, loudness normalisation, and an "
                        "offset to fix audio/video sync. Output is 16 kHz mono.",
            inputs=[
                io.Audio.Input("audio"),
                io.Boolean.Input("denoise", default=True, tooltip="Spectral subtraction with a noise profile taken "
                                                                  "from the quietest parts."),
                io.Boolean.Input("compress", default=False, tooltip="Dynamic-range compression (even out loud/soft)."),
                io.Float.Input("target_lufs", default=-23.0, min=-70.0, max=0.0, step=0.5,
                               tooltip="Loudness normalisation target (ITU-R BS.1770); -70 disables it."),
                io.Float.Input("offset_ms", default=0.0, min=-2000.0, max=2000.0, step=1.0,
                               tooltip="Positive = audio later (mouth moves later). Length is kept."),
            ],
            outputs=[io.Audio.Output(display_name="audio")],
        )

    @classmethod
    def execute(cls, audio, denoise, compress, target_lufs, offset_ms):
        from ..pipelines.audio_enhance import clean_up_speech
        from ..pipelines.media import TARGET_SAMPLE_RATE, make_audio

        check_audio(audio, "Diff2Lip Audio Clean-up")
        cleaned, note = clean_up_speech(audio["waveform"], audio["sample_rate"], denoise=denoise, compress=compress,
                                        target_lufs=None if target_lufs <= -70 else target_lufs, offset_ms=offset_ms)
        if note:
            log.warning("Diff2Lip Audio Clean-up: %s", note)
        return io.NodeOutput(make_audio(cleaned, TARGET_SAMPLE_RATE))


def _frames_and_mask(frames, mask, node: str, names=("frames", "mask")):
    check_finite(frames, node, names[0])
    check_finite(mask, node, names[1])
    array = image_to_numpy(frames)
    masks = mask_to_numpy(mask)
    if masks.shape != array.shape[:3]:
        raise ValueError(f"mask shape {tuple(masks.shape)} does not match the frames {tuple(array.shape[:3])}: "
                         "connect the generated_mask of the same Diff2Lip Lip Sync run")
    return array, masks


class Diff2LipLipMaskComposite(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipLipMaskComposite",
            display_name="Diff2Lip Lip-Mask Composite",
            category=ENHANCE,
            description="Blends the generated mouth into the original frame through a soft lip-shaped mask from face "
                        "landmarks instead of the hard face-box edge (removes the visible box/seam). The mask can "
                        "follow the mouth opening. Frames where no landmarks are found keep the hard region.",
            inputs=[
                io.Image.Input("original", tooltip="The frames that went into Diff2Lip Lip Sync."),
                io.Image.Input("generated", tooltip="The frames that came out of it."),
                io.Mask.Input("generated_mask", tooltip="Its generated_mask output."),
                *lip_mask_settings(),
            ],
            outputs=[io.Image.Output(display_name="frames"), io.Mask.Output(display_name="composite_mask")],
        )

    @classmethod
    def execute(cls, original, generated, generated_mask, mode, expansion, feather, adaptive_gain, smooth_window,
                landmarks=FACEMESH):
        from ..pipelines.diff2lip_enhance import FanLandmarker, composite, facemesh_landmarks, lip_composite_masks

        check_finite(original, "Diff2Lip Lip-Mask Composite", "original")
        orig = image_to_numpy(original)
        gen, region = _frames_and_mask(generated, generated_mask, "Diff2Lip Lip-Mask Composite",
                                       ("generated", "generated_mask"))
        if orig.shape != gen.shape:
            raise ValueError(f"original {orig.shape} and generated {gen.shape} differ: connect the same clip")
        if mode == "hard box":
            masks = region
        else:
            if landmarks == FACEMESH:
                landmarker, scheme = facemesh_landmarks, "facemesh"
            else:
                path = resolve_model_file("face_detection", landmarks, "Diff2Lip Lip-Mask Composite")
                landmarker, scheme = FanLandmarker(path, device=str(torch_device())), "fan68"
            masks, info = lip_composite_masks(orig, gen, region, expansion=expansion, feather=feather,
                                              adaptive_gain=adaptive_gain, smooth_window=smooth_window,
                                              landmarker=landmarker, scheme=scheme,
                                              progress=progress_callback(2 * len(orig)))
            if info["num_fallback"]:
                log.warning("Lip-Mask Composite: no landmarks in %d frames; used the hard region there",
                            info["num_fallback"])
        return io.NodeOutput(numpy_to_image(composite(orig, gen, region, masks)), torch.from_numpy(masks))


class Diff2LipColorMatch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipColorMatch",
            display_name="Diff2Lip Colour Match",
            category=ENHANCE,
            description="Matches the generated region's colour to the surrounding original skin (Lab mean/std or "
                        "histogram, measured in a band along the region's edge).",
            inputs=[io.Image.Input("original"), io.Image.Input("generated"), io.Mask.Input("mask"),
                    *color_match_settings()],
            outputs=[io.Image.Output(display_name="frames")],
        )

    @classmethod
    def execute(cls, original, generated, mask, method, band_px, white_balance="off"):
        from ..pipelines.diff2lip_enhance import match_color

        check_finite(original, "Diff2Lip Colour Match", "original")
        gen, masks = _frames_and_mask(generated, mask, "Diff2Lip Colour Match", ("generated", "mask"))
        out = match_color(image_to_numpy(original), gen, masks, method=method, band_px=band_px,
                          progress=progress_callback(len(gen)), white_balance=white_balance)
        return io.NodeOutput(numpy_to_image(out))


class Diff2LipTemporalSmooth(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipTemporalSmooth",
            display_name="Diff2Lip Temporal Smooth",
            category=ENHANCE,
            description="Reduces flicker of the generated mouth by blending each frame with the previous output "
                        "warped by optical flow (no motion smear); occluded pixels are left alone.",
            inputs=[io.Image.Input("frames"), io.Mask.Input("mask"),
                    *temporal_settings()],
            outputs=[io.Image.Output(display_name="frames")],
        )

    @classmethod
    def execute(cls, frames, mask, strength, method):
        from ..pipelines.diff2lip_enhance import ema_temporal_smooth, flow_temporal_smooth

        array, masks = _frames_and_mask(frames, mask, "Diff2Lip Temporal Smooth")
        if TEMPORAL_METHODS[method] == "ema":
            out = ema_temporal_smooth(array, masks, strength)
        else:
            out = flow_temporal_smooth(array, masks, strength, method=TEMPORAL_METHODS[method],
                                       progress=progress_callback(len(array)))
        return io.NodeOutput(numpy_to_image(out))


class Diff2LipDenoiseRegion(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipDenoiseRegion",
            display_name="Diff2Lip Artifact Reduction",
            category=ENHANCE,
            description="Edge-preserving denoise of the generated region only (bilateral, non-local means or guided "
                        "filter); everything outside the mask is left bit-for-bit.",
            inputs=[io.Image.Input("frames"), io.Mask.Input("mask"),
                    *denoise_settings()],
            outputs=[io.Image.Output(display_name="frames")],
        )

    @classmethod
    def execute(cls, frames, mask, method, strength):
        from ..pipelines.diff2lip_enhance import denoise_region

        array, masks = _frames_and_mask(frames, mask, "Diff2Lip Artifact Reduction")
        out = denoise_region(array, masks, method=method, strength=strength, progress=progress_callback(len(array)))
        return io.NodeOutput(numpy_to_image(out))


class Diff2LipSharpen(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipSharpen",
            display_name="Diff2Lip Sharpen Mouth",
            category=ENHANCE,
            description="Unsharp mask on the generated region, feathered; brightness is preserved (flat areas do not "
                        "change), edges gain contrast. Outside the mask nothing changes.",
            inputs=[io.Image.Input("frames"), io.Mask.Input("mask"),
                    *sharpen_settings()],
            outputs=[io.Image.Output(display_name="frames")],
        )

    @classmethod
    def execute(cls, frames, mask, strength, sigma):
        from ..pipelines.diff2lip_enhance import sharpen_region

        array, masks = _frames_and_mask(frames, mask, "Diff2Lip Sharpen Mouth")
        out = sharpen_region(array, masks, strength=strength, sigma=sigma, progress=progress_callback(len(array)))
        return io.NodeOutput(numpy_to_image(out))


class Diff2LipQualityMetrics(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            search_aliases=["lipsync", "psnr", "ssim", "evaluation"],
            node_id="Diff2LipQualityMetrics",
            display_name="Diff2Lip Quality Metrics",
            category=ENHANCE,
            description="PSNR/SSIM (full frame and outside the mask, where output must equal input), temporal "
                        "flicker, seam energy, boundary colour difference and mouth-landmark distance.",
            inputs=[io.Image.Input("original"), io.Image.Input("output"), io.Mask.Input("generated_mask"),
                    io.Mask.Input("composite_mask", optional=True),
                    io.Boolean.Input("landmarks", default=True,
                                     tooltip="Measure mouth landmark distance with FaceMesh (reconstruction mode).")],
            outputs=[io.String.Output(display_name="report")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, original, output, generated_mask, landmarks, composite_mask=None):
        from ..pipelines.diff2lip_enhance import quality_report

        node = "Diff2Lip Quality Metrics"
        check_finite(original, node, "original")
        out, region = _frames_and_mask(output, generated_mask, node, ("output", "generated_mask"))
        composite = None if composite_mask is None else \
            _frames_and_mask(output, composite_mask, node, ("output", "composite_mask"))[1]
        report = quality_report(image_to_numpy(original), out, region, composite_mask=composite, landmarks=landmarks)
        text = json.dumps(report, default=float, indent=1)
        log.info("Diff2Lip Quality Metrics: %s", text)
        return io.NodeOutput(text, ui={"text": [text]})


NODES = [Diff2LipAudioCleanup, Diff2LipLipMaskComposite, Diff2LipColorMatch, Diff2LipTemporalSmooth, Diff2LipDenoiseRegion, Diff2LipSharpen, Diff2LipQualityMetrics]
