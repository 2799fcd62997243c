"""Metrics nodes: the lip-sync report (SyncNet LSE when its weights are present, the weights-free A/V offset proxy,
image metrics, artifact flags), the artifact check with optional repair, and GAGAvatar self-reenactment metrics."""
from __future__ import annotations

import json

import numpy as np
from comfy_api.latest import io

from .common import ModelCache, image_to_numpy, log, mask_to_numpy, numpy_to_image, progress_callback
from .guards import check_audio, check_finite, check_fps
from .paths import model_files, resolve_model_file

METRICS = "TalkingHead/metrics"
SYNCNET_AUTO, SYNCNET_NONE = "auto", "none"
SYNCNET_FILE = "syncnet_v2.model"
_syncnets = ModelCache(capacity=1)


def _report_text(report: dict) -> str:
    return json.dumps(report, default=lambda v: v.tolist() if isinstance(v, np.ndarray) else float(v), indent=1)


def _same_frames(node: str, reference, other, reference_name: str, other_name: str):
    a, b = image_to_numpy(reference), image_to_numpy(other)
    if a.shape != b.shape:
        raise ValueError(f"{node}: {other_name} {tuple(b.shape)} and {reference_name} {tuple(a.shape)} differ in "
                         f"frame count or size; connect the {reference_name} frames the {other_name} was made from")
    return a, b


def _syncnet_choice(node: str, choice: str):
    """(model or None, reason it is absent)."""
    if choice == SYNCNET_NONE:
        return None, "switched off (syncnet = none)"
    files = model_files("syncnet")
    if choice == SYNCNET_AUTO:
        if not files:
            return None, (f"no SyncNet weights: put {SYNCNET_FILE} (joonson/syncnet_python's download_model.sh) into "
                          "ComfyUI/models/syncnet; the pack never downloads it")
        choice = SYNCNET_FILE if SYNCNET_FILE in files else files[0]
    path = resolve_model_file("syncnet", choice, node)
    from ..models.syncnet import load_syncnet
    from .common import torch_device

    device = torch_device()
    return _syncnets.get(path, device, "float32", lambda: load_syncnet(path, device=device)), None


class Diff2LipSyncMetrics(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipSyncMetrics",
            display_name="Diff2Lip Lip-Sync Metrics",
            category=METRICS,
            description="What a lip-sync user cares about, in one report: SyncNet LSE-D / LSE-C and offset on the "
                        "output's face track (when syncnet_v2.model is in models/syncnet, else the reason it is "
                        "absent), a weights-free A/V offset estimate (FaceMesh mouth opening vs speech loudness; a "
                        "proxy, not SyncNet), PSNR/SSIM outside the generated region (should stay ~unchanged), "
                        "flicker, seam energy, colour ΔE across the region edge and flagged artifact frames; plus a "
                        "per-frame plot.",
            inputs=[io.Image.Input("original"), io.Image.Input("output"), io.Audio.Input("audio"),
                    io.Mask.Input("generated_mask"),
                    io.Float.Input("fps", default=25.0, min=1.0, max=240.0, step=0.001,
                                   tooltip="Frame rate of the clip (SyncNet scores at 25 fps; other rates are "
                                           "resampled by nearest frame)."),
                    io.Combo.Input("syncnet", options=[SYNCNET_AUTO, SYNCNET_NONE, *model_files("syncnet")],
                                   default=SYNCNET_AUTO,
                                   tooltip="SyncNet weights for LSE-C/LSE-D: auto = syncnet_v2.model from "
                                           "models/syncnet if present; none = skip."),
                    io.Mask.Input("composite_mask", optional=True,
                                  tooltip="The Lip-Mask Composite's mask, for the seam and colour measures.")],
            outputs=[io.String.Output(display_name="report"), io.Image.Output(display_name="plot"),
                     io.Float.Output(display_name="proxy_offset_ms",
                                     tooltip="The proxy's offset: connect to Audio Clean-up's offset_ms to delay "
                                             "(or advance) the audio by it. 0 when it cannot be estimated.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, original, output, audio, generated_mask, fps, syncnet, composite_mask=None):
        from ..pipelines.media import audio_to_mono
        from ..pipelines.metrics.per_frame import plot_series
        from ..pipelines.diff2lip_enhance.sync_report import lipsync_report

        node = "Diff2Lip Lip-Sync Metrics"
        fps = check_fps(fps, node)
        check_audio(audio, node)  # NaN frames are not refused: the artifact flags report them
        before, after = _same_frames(node, original, output, "original", "output")
        region = mask_to_numpy(generated_mask)
        if region.shape != after.shape[:3]:
            raise ValueError(f"{node}: generated_mask {tuple(region.shape)} does not match the frames "
                             f"{tuple(after.shape[:3])}; connect the mask of the same Lip Sync run")
        composite = None if composite_mask is None else mask_to_numpy(composite_mask)
        model, absent = _syncnet_choice(node, syncnet)
        wav = audio_to_mono(audio["waveform"], audio["sample_rate"])
        report, per_frame = lipsync_report(before, after, region, wav, fps, composite=composite, syncnet=model,
                                           syncnet_absent_reason=absent or "",
                                           progress=progress_callback(len(after)))
        text = _report_text(report)
        log.info("%s: %s", node, text)
        offset = report["av_offset_proxy"]["offset_ms"]
        return io.NodeOutput(text, numpy_to_image(plot_series(per_frame)[None]), float(offset or 0.0),
                             ui={"text": [text]})


class Diff2LipArtifactCheck(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipArtifactCheck",
            display_name="Diff2Lip Artifact Check",
            category=METRICS,
            description="Flags frames whose generated region has NaN/inf pixels, 8x8 blocking, clipped (extreme) "
                        "colour or a one-frame flicker spike, lists them in the report, and optionally replaces "
                        "that region with the nearest good frame's.",
            inputs=[io.Image.Input("frames"), io.Mask.Input("mask"),
                    io.Boolean.Input("replace", default=False,
                                     tooltip="Replace flagged frames' region by the nearest unflagged frame's."),
                    io.Float.Input("blockiness_limit", default=1.6, min=1.0, max=10.0, step=0.05,
                                   tooltip="Flag when steps across an 8 px grid exceed this multiple of the "
                                           "average step (about 1 for natural texture)."),
                    io.Float.Input("spike_mads", default=6.0, min=1.0, max=50.0, step=0.5,
                                   tooltip="Flag a frame that deviates from its neighbours' mean by more than the "
                                           "clip's median + this many MADs.")],
            outputs=[io.Image.Output(display_name="frames"), io.String.Output(display_name="report")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, frames, mask, replace, blockiness_limit, spike_mads):
        from ..pipelines.metrics.artifacts import detect_artifacts, replace_flagged

        array, masks = image_to_numpy(frames), mask_to_numpy(mask)
        if masks.shape != array.shape[:3]:
            raise ValueError(f"Diff2Lip Artifact Check: mask {tuple(masks.shape)} does not match the frames "
                             f"{tuple(array.shape[:3])}; connect the generated_mask of the same Lip Sync run")
        found = detect_artifacts(array, masks, blockiness_limit=blockiness_limit, spike_mads=spike_mads)
        report = {**found.as_dict(), "replaced": bool(replace and found.flagged)}
        out = replace_flagged(array, masks, found.flagged) if replace and found.flagged else array
        text = _report_text(report)
        if found.flagged:
            log.warning("Diff2Lip Artifact Check: %s", text)
        return io.NodeOutput(numpy_to_image(out), text, ui={"text": [text]})


class GAGAvatarSelfReenactMetrics(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="GAGAvatarSelfReenactMetrics",
            display_name="GAGAvatar Self-Reenactment Metrics",
            category=METRICS,
            description="For an avatar driven by the video its source came from (each driver frame is the ground "
                        "truth): PSNR, SSIM, eye-region PSNR, FaceMesh expression error (NME after a similarity "
                        "fit), pose error proxies and landmark jitter; LPIPS / identity similarity are reported "
                        "absent (their networks ship with no package). Plus a per-frame plot.",
            inputs=[io.Image.Input("driver_frames", tooltip="The frames the avatar was driven with."),
                    io.Image.Input("rendered")],
            outputs=[io.String.Output(display_name="report"), io.Image.Output(display_name="plot")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, driver_frames, rendered):
        from ..pipelines.metrics.avatar import self_reenactment_report
        from ..pipelines.metrics.per_frame import plot_series

        node = "GAGAvatar Self-Reenactment Metrics"
        check_finite(driver_frames, node, "driver_frames")
        check_finite(rendered, node, "rendered")
        driver, render = image_to_numpy(driver_frames), image_to_numpy(rendered)
        try:
            report, per_frame = self_reenactment_report(driver, render, progress=progress_callback(len(render)))
        except ValueError as error:
            raise ValueError(f"{node}: {error}") from error
        text = _report_text(report)
        log.info("%s: %s", node, text)
        return io.NodeOutput(text, numpy_to_image(plot_series(per_frame)[None]), ui={"text": [text]})


NODES = [Diff2LipSyncMetrics, Diff2LipArtifactCheck, GAGAvatarSelfReenactMetrics]
