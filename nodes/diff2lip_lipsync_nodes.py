"""Diff2Lip lip-sync nodes: the one-node lip sync and its three split steps (crop, sample, paste)."""
from __future__ import annotations

import json

import torch
from comfy_api.latest import io

from ..models.speed import default_batch_size
from . import help_text
from .common import image_to_numpy, log, numpy_to_image, progress_callback, torch_device
from .guards import check_audio, check_finite, check_fps, node_errors
from .help_text import schema
from .sockets import DIFF2LIP_CROPS, DIFF2LIP_MODEL, FACE_DETECTOR

CATEGORY = "TalkingHead/Diff2Lip"


def _sampling_inputs() -> list:
    from ..pipelines.diff2lip.presets import QUALITY_PRESETS

    return [
        io.Combo.Input("quality", options=[*QUALITY_PRESETS, "custom"], default="high",
                       tooltip="DDIM steps: fast 10, balanced 25 (the release), high 50, ultra 100."),
        io.Int.Input("custom_steps", default=25, min=1, max=1000, tooltip="Steps when quality = custom."),
        io.Int.Input("seed", default=7, min=0, max=2**31 - 1, control_after_generate=True,
                     tooltip="One noise draw shared by all frames, as the reference (7 = reference seed)."),
        io.Int.Input("batch_size", default=0, min=0, max=256,
                     tooltip=help_text.batch_size("Face crops", "0 = auto: 1 on CPU (fastest per frame there), 8 on "
                                                                "GPUs. The output does not depend on it.")),
    ]


def _face_inputs() -> list:
    from ..pipelines.diff2lip.presets import RELEASE_PADS

    top, bottom, left, right = RELEASE_PADS
    return [
        io.Combo.Input("face", options=["largest", "most confident", "by index (left to right)"],
                       default="largest", tooltip="Which face to sync when there are several."),
        io.Int.Input("face_index", default=0, min=0, max=32, tooltip="Used with 'by index': 0 = leftmost."),
        io.Int.Input("pad_top", default=top, min=0, max=512,
                     tooltip="Pixels added above the face box (0 in the Diff2Lip release)."),
        io.Int.Input("pad_bottom", default=bottom, min=0, max=512,
                     tooltip="Pixels added below the face box (0 in the Diff2Lip release; Wav2Lip uses 10 to include "
                             "the chin)."),
        io.Int.Input("pad_left", default=left, min=0, max=512,
                     tooltip="Pixels added left of the face box (0 in the Diff2Lip release)."),
        io.Int.Input("pad_right", default=right, min=0, max=512,
                     tooltip="Pixels added right of the face box (0 in the Diff2Lip release)."),
    ]


def _max_gap_input() -> io.Int.Input:
    return io.Int.Input("max_gap", default=5, min=0, max=100,
                        tooltip="Frames without a detected face between two detected ones get interpolated boxes "
                                "when the gap is at most this long (0 = off); longer gaps pass through.")


def _flow_start_input() -> io.Float.Input:
    return io.Float.Input("flow_guided_start", default=0.0, min=0.0, max=0.9, step=0.05,
                          tooltip="Experimental, off by default: start each frame's sampling from the previous "
                                  "frame's result warped by optical flow, skipping this fraction of the steps (frames "
                                  "are then sampled one by one). Not verified with the released weights; see README.")


def _paste_input() -> io.Combo.Input:
    from ..pipelines.diff2lip.presets import PASTE_MODES, RELEASE_PASTE

    return io.Combo.Input("paste", options=list(PASTE_MODES), default=RELEASE_PASTE,
                          tooltip="whole box (release): the whole generated crop is resized into the face box, as "
                                  "the official script does (the upper face is resampled twice; Lip Sync then also "
                                  "crops and rounds in 8 bits like it). lower half: only the generated mouth half is "
                                  "written; everything else stays bit-identical.")


def lip_sync_inputs() -> list:
    """The inputs Diff2Lip Lip Sync and its stream form share, after their frames and audio, in this order."""
    return [
        DIFF2LIP_MODEL.Input("model"),
        FACE_DETECTOR.Input("detector"),
        *_sampling_inputs(),
        *_face_inputs(),
        _paste_input(),
        io.Boolean.Input("close_mouth_in_silence", default=False, tooltip=help_text.CLOSE_MOUTH_IN_SILENCE),
        _flow_start_input(),
        _max_gap_input(),
        io.UpscaleModel.Input("upscale_model", optional=True, tooltip=help_text.CROP_UPSCALER),
    ]


def _pick(face: str, face_index: int):
    return {"largest": "largest", "most confident": "best"}.get(face, face_index)


def _batch_size(batch_size: int, model) -> int:
    """The batch_size input: 0 = auto, the device's best (1 on CPU, 8 on GPUs)."""
    return batch_size or default_batch_size(model.device)


def _validate_steps(node: str, quality: str, custom_steps: int):
    from ..pipelines.diff2lip import ddim_timesteps
    from ..pipelines.diff2lip.presets import steps_for

    try:
        ddim_timesteps(steps_for(quality, custom_steps))
    except ValueError as e:
        return f"{node}: custom_steps: {e}"
    return True


def _crop_upscaler(upscale_model, device):
    from ..pipelines.diff2lip_enhance.superres import CropUpscaler

    if upscale_model is None:
        return None
    upscale_model.to(device)
    return CropUpscaler(upscale_model, device=device)


class Diff2LipLipSync(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            search_aliases=help_text.LIP_SYNC_ALIASES,
            node_id="Diff2LipLipSync",
            display_name="Diff2Lip Lip Sync",
            category=CATEGORY,
            description="Re-synthesises the mouth of every frame to the audio (DDIM on the Diff2Lip UNet). With "
                        "quality balanced, seed 7, pads 0 and paste 'whole box (release)' it samples, crops and "
                        "pastes like the official release. Frames without a face pass through unchanged and are "
                        "counted in the report. Outputs the audio trimmed/padded to the video and the written "
                        "region as a MASK.",
            inputs=[
                io.Image.Input("frames", tooltip=help_text.FRAMES),
                io.Audio.Input("audio", tooltip=help_text.SPEECH),
                io.Float.Input("fps", default=25.0, min=1.0, max=240.0, step=0.001,
                               tooltip=help_text.fps(note="Audio windows are placed by time (no re-timing).")),
                *lip_sync_inputs(),
                io.Combo.Input("sampling_mask", options=["lower_half", "lip_region"], default="lower_half",
                               optional=True,
                               tooltip="What the diffusion re-generates: the lower half of the face crop (the "
                                       "release) or the FaceMesh lip region expanded (experimental; untested with "
                                       "the released weights, which were trained on the lower half)."),
            ],
            outputs=[io.Image.Output(display_name="frames"), io.Audio.Output(display_name="audio"),
                     io.Mask.Output(display_name="generated_mask"), io.String.Output(display_name="report")],
        )

    @classmethod
    def validate_inputs(cls, quality, custom_steps):  # named inputs only: **kwargs disables built-in checks
        return _validate_steps("Diff2Lip Lip Sync", quality, custom_steps)

    @classmethod
    def execute(cls, frames, audio, fps, model, detector, quality, custom_steps, seed, batch_size, face, face_index,
                pad_top, pad_bottom, pad_left, pad_right, paste, close_mouth_in_silence, flow_guided_start=0.0,
                max_gap=5, upscale_model=None, sampling_mask="lower_half"):
        from ..pipelines.audio_enhance import speech_for_frames
        from ..pipelines.diff2lip import lipsync
        from ..pipelines.diff2lip.presets import PASTE_MODES, steps_for
        from ..pipelines.diff2lip_enhance.sampling_mask import sampling_mask_maker
        from ..pipelines.media import make_audio

        node = "Diff2Lip Lip Sync"
        fps = check_fps(fps, node)
        check_finite(frames, node, "frames")
        check_audio(audio, node)
        steps = steps_for(quality, custom_steps)
        array = image_to_numpy(frames)
        # The mouth follows the audio as it is returned: trimmed to the video, or padded with silence (mouth closes)
        fitted_wave, wav, active = speech_for_frames(audio["waveform"], audio["sample_rate"], len(array), fps,
                                                     close_mouth_in_silence)
        upscale = _crop_upscaler(upscale_model, model.device)
        out, mask, report = lipsync(array, wav, fps, model.module, detector, steps=steps, seed=seed,
                                    batch_size=_batch_size(batch_size, model),
                                    pads=(pad_top, pad_bottom, pad_left, pad_right),
                                    pick=_pick(face, face_index),
                                    progress=progress_callback(len(array)), upscale=upscale, active_frames=active,
                                    flow_start=flow_guided_start, paste_whole_box=PASTE_MODES[paste],
                                    sampling_mask=sampling_mask_maker(sampling_mask), max_gap=max_gap)
        report["steps"] = steps
        report["paste"] = paste
        if active is not None:
            report["silent_frames_kept"] = int((~active).sum())
        if upscale is not None:
            report["upscale_ms_per_frame"] = round(upscale.ms_per_crop(), 1)
        for key in ("passed_through_frames", "bridged_frames"):
            if len(report[key]) > 50:  # keep the report readable; the count stays
                report.pop(key)
        text = json.dumps(report, default=float)
        log.info("Diff2Lip Lip Sync: %s", text)
        return io.NodeOutput(numpy_to_image(out), make_audio(fitted_wave, audio["sample_rate"]), torch.from_numpy(mask),
                             text, ui={"text": [text]})


class Diff2LipCropFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            search_aliases=["lipsync", "face crop"],
            node_id="Diff2LipCropFaces",
            display_name="Diff2Lip Crop Faces",
            category=CATEGORY,
            description="Step 1 of 3 of the split lip sync: finds, smooths and crops the face of every frame. The "
                        "crops travel as a FaceCrops (images [M,S,S,3] in 0..1, boxes, frame indices) and are also "
                        "shown as IMAGE. Frames without a face are left out (they pass through at paste time).",
            inputs=[io.Image.Input("frames", tooltip=help_text.FRAMES), FACE_DETECTOR.Input("detector"),
                    io.Int.Input("crop_size", default=128, min=16, max=1024,
                                 tooltip="The model's input size: 128 for the released checkpoint."),
                    *_face_inputs(),
                    _max_gap_input()],
            outputs=[DIFF2LIP_CROPS.Output(display_name="crops"), io.Image.Output(display_name="crop_images")],
        )

    @classmethod
    def execute(cls, frames, detector, crop_size, face, face_index, pad_top, pad_bottom, pad_left, pad_right,
                max_gap=5):
        from ..pipelines.diff2lip import crop_clip

        check_finite(frames, "Diff2Lip Crop Faces", "frames")
        array = image_to_numpy(frames)
        crops = crop_clip(array, detector, crop_size, _pick(face, face_index),
                          (pad_top, pad_bottom, pad_left, pad_right), progress=progress_callback(len(array)),
                          max_gap=max_gap)
        if not len(crops):
            log.warning("Diff2Lip Crop Faces: no face in any of the %d frames; everything will pass through",
                        len(array))
        return io.NodeOutput(crops, numpy_to_image(crops.images) if len(crops) else
                             torch.zeros(1, crop_size, crop_size, 3))


class Diff2LipSampleFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            search_aliases=["lipsync", "wav2lip"],
            node_id="Diff2LipSampleFaces",
            display_name="Diff2Lip Sample Faces",
            category=CATEGORY,
            description="Step 2 of 3: re-generates the lower half of each face crop for the audio at that frame's "
                        "time (DDIM on the Diff2Lip UNet).",
            inputs=[DIFF2LIP_CROPS.Input("crops"), io.Audio.Input("audio", tooltip=help_text.SPEECH),
                    io.Float.Input("fps", default=25.0, min=1.0, max=240.0, step=0.001,
                                   tooltip=help_text.fps("the cropped video")),
                    DIFF2LIP_MODEL.Input("model"), *_sampling_inputs(),
                    io.Boolean.Input("close_mouth_in_silence", default=False,
                                     tooltip=help_text.CLOSE_MOUTH_IN_SILENCE)],
            outputs=[DIFF2LIP_CROPS.Output(display_name="crops"), io.Image.Output(display_name="crop_images")],
        )

    @classmethod
    def validate_inputs(cls, quality, custom_steps):  # named inputs only: **kwargs disables built-in checks
        return _validate_steps("Diff2Lip Sample Faces", quality, custom_steps)

    @classmethod
    def execute(cls, crops, audio, fps, model, quality, custom_steps, seed, batch_size, close_mouth_in_silence):
        from ..pipelines.audio_enhance import speech_for_frames
        from ..pipelines.diff2lip import sample_crops
        from ..pipelines.diff2lip.presets import steps_for

        fps = check_fps(fps, "Diff2Lip Sample Faces")
        check_audio(audio, "Diff2Lip Sample Faces")
        check_finite(crops.images, "Diff2Lip Sample Faces", "crops")
        # as Lip Sync: silence past the end of the audio
        _, wav, active = speech_for_frames(audio["waveform"], audio["sample_rate"], crops.num_frames, fps,
                                           close_mouth_in_silence)
        batch_size = _batch_size(batch_size, model)
        out = sample_crops(model.module, crops, wav, fps, steps_for(quality, custom_steps), seed, batch_size, active,
                           progress_callback(1))
        return io.NodeOutput(out, numpy_to_image(out.images) if len(out) else torch.zeros(1, 8, 8, 3))


class Diff2LipPasteFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            search_aliases=["lipsync", "face paste"],
            node_id="Diff2LipPasteFaces",
            display_name="Diff2Lip Paste Faces",
            category=CATEGORY,
            description="Step 3 of 3: pastes each generated crop back into its frame (the whole box like the "
                        "release, or only the generated lower half). Optionally "
                        "pass edited crops (e.g. after a face-restoration node) as 'faces', and a super-resolution "
                        "model for boxes larger than the crop.",
            inputs=[io.Image.Input("frames", tooltip="The frames that were cropped."), DIFF2LIP_CROPS.Input("crops"),
                    io.Image.Input("faces", optional=True,
                                   tooltip="Replacement crops, same count as the crops (any size; resized into the "
                                           "boxes)."),
                    _paste_input(),
                    io.UpscaleModel.Input("upscale_model", optional=True, tooltip=help_text.CROP_UPSCALER)],
            outputs=[io.Image.Output(display_name="frames"), io.Mask.Output(display_name="generated_mask")],
        )

    @classmethod
    def execute(cls, frames, crops, paste, faces=None, upscale_model=None):
        from ..pipelines.diff2lip import paste_crops
        from ..pipelines.diff2lip.presets import PASTE_MODES

        check_finite(frames, "Diff2Lip Paste Faces", "frames")
        if faces is not None:
            check_finite(faces, "Diff2Lip Paste Faces", "faces")
        with node_errors("Diff2Lip Paste Faces"):
            output, mask = paste_crops(image_to_numpy(frames), crops, None if faces is None else image_to_numpy(faces),
                                       upscale=_crop_upscaler(upscale_model, torch_device()),
                                       lower_half=not PASTE_MODES[paste])
        return io.NodeOutput(numpy_to_image(output), torch.from_numpy(mask))


NODES = [Diff2LipLipSync, Diff2LipCropFaces, Diff2LipSampleFaces, Diff2LipPasteFaces]
