"""Diff2Lip nodes: adapters from ComfyUI sockets to ``pipelines.diff2lip`` (no lip-sync logic lives here)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import torch
from comfy_api.latest import io

from .common import (PRECISIONS, LoadedModel, ModelCache, image_to_numpy, log, mask_to_numpy, numpy_to_image,
                     progress_callback, resolve_dtype, torch_device)
from .paths import model_file_problem, model_files, resolve_model_file

DIFF2LIP_MODEL = io.Custom("DIFF2LIP_MODEL")
FACE_DETECTOR = io.Custom("DIFF2LIP_FACE_DETECTOR")
DIFF2LIP_CROPS = io.Custom("DIFF2LIP_CROPS")
CATEGORY = "TalkingHead/Diff2Lip"
ENHANCE = "TalkingHead/Diff2Lip/enhance"
_models = ModelCache()
_detectors = ModelCache()
_upscalers = ModelCache()
FACEMESH = "FaceMesh (built-in)"
BUILTIN_DETECTORS = {"BlazeFace short-range (built-in)": "blazeface_short",
                     "BlazeFace full-range (built-in)": "blazeface_full"}


class Diff2LipModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipModelLoader",
            display_name="Diff2Lip Model Loader",
            category=CATEGORY,
            description="Loads the official Diff2Lip checkpoint (checkpoint.pt) from models/diff2lip. The architecture is "
                        "read from the file itself; the model stays cached on the device between runs.",
            inputs=[
                io.Combo.Input("ckpt_name", options=model_files("diff2lip"),
                               tooltip="Checkpoint file in models/diff2lip (official Diff2Lip checkpoint.pt, CC BY-NC 4.0)."),
                io.Combo.Input("precision", options=PRECISIONS, default="auto",
                               tooltip="auto = fp16 on CUDA, fp32 on CPU. Half precision is only used on CUDA."),
                io.Int.Input("num_head_channels", default=64, min=1, max=1024,
                             tooltip="Attention head width: the one size the checkpoint cannot tell. The release uses 64."),
            ],
            outputs=[DIFF2LIP_MODEL.Output(display_name="model")],
        )

    @classmethod
    def validate_inputs(cls, ckpt_name):  # no **kwargs: that would switch off the built-in min/max checks
        return model_file_problem("diff2lip", ckpt_name, "Diff2Lip Model Loader") or True

    @classmethod
    def execute(cls, ckpt_name, precision, num_head_channels=64):
        from ..models.diff2lip import load_diff2lip

        path = resolve_model_file("diff2lip", ckpt_name, "Diff2Lip Model Loader")
        device = torch_device()
        dtype = resolve_dtype(precision, device)
        module = _models.get(path, device, dtype, lambda: load_diff2lip(path, device=device, dtype=dtype,
                                                                        num_head_channels=num_head_channels),
                             extra=(num_head_channels,))
        return io.NodeOutput(LoadedModel(module, device, dtype, ckpt_name))


class Diff2LipModelInfo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipModelInfo",
            display_name="Diff2Lip Model Info",
            category=CATEGORY,
            description="Shows what the loader read from the checkpoint (architecture, parameters, device, precision), "
                        "to check a checkpoint before a long run.",
            inputs=[DIFF2LIP_MODEL.Input("model")],
            outputs=[io.String.Output(display_name="info")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model):
        params = sum(p.numel() for p in model.module.parameters())
        settings = "\n".join(f"{k} = {v}" for k, v in dataclasses.asdict(model.module.config).items())
        text = f"{model.name}: {params:,} parameters on {model.device} ({model.dtype})\n{settings}"
        return io.NodeOutput(text, ui={"text": [text]})


class Diff2LipFaceDetectorLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipFaceDetectorLoader",
            display_name="Diff2Lip Face Detector",
            category=CATEGORY,
            description="Face detector for the lip-sync crop. BlazeFace ships inside mediapipe 0.10.21 (no download); "
                        "S3FD (s3fd-619a316812.pth in models/face_detection) is what the official Diff2Lip uses.",
            inputs=[
                io.Combo.Input("detector", options=[*BUILTIN_DETECTORS, *model_files("face_detection")],
                               default="BlazeFace short-range (built-in)",
                               tooltip="Built-in BlazeFace, or an S3FD file from models/face_detection."),
                io.Float.Input("min_confidence", default=0.5, min=0.05, max=0.99, step=0.01,
                               tooltip="Detections below this score are ignored."),
                io.Int.Input("max_side", default=0, min=0, max=4096,
                             tooltip="Detect on a copy downscaled to this longest side (boxes mapped back); 0 = full "
                                     "resolution. 640 is much faster on 1080p with nearly the same boxes."),
            ],
            outputs=[FACE_DETECTOR.Output(display_name="detector")],
        )

    @classmethod
    def execute(cls, detector, min_confidence, max_side):
        from ..pipelines.face_detection import make_detector

        if detector in BUILTIN_DETECTORS:
            built = make_detector(BUILTIN_DETECTORS[detector], min_confidence=min_confidence, max_side=max_side or None)
        else:
            path = resolve_model_file("face_detection", detector, "Diff2Lip Face Detector")
            device = torch_device()
            built = _detectors.get(path, device, torch.float32,
                                   lambda: make_detector("s3fd", weights_path=path, device=str(device),
                                                         min_confidence=min_confidence, max_side=max_side or None),
                                   extra=(min_confidence, max_side))
        return io.NodeOutput(built)


class Diff2LipUpscalerLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        from ..models.realesrgan import BACKENDS

        return io.Schema(
            node_id="Diff2LipUpscalerLoader",
            display_name="Diff2Lip Upscaler Loader",
            category=CATEGORY,
            description="Loads a Real-ESRGAN file (RealESRGAN_x2plus / x4plus .pth in models/upscale_models) for the "
                        "lip-sync super-resolution. spandrel is what ComfyUI itself uses; 'basicsr' runs the "
                        "original network if basicsr is installed (same outputs). Core's Load Upscale Model works too.",
            inputs=[
                io.Combo.Input("model_name", options=model_files("upscale_models"),
                               tooltip="Super-resolution model file in models/upscale_models."),
                io.Combo.Input("backend", options=list(BACKENDS), default="spandrel",
                               tooltip="spandrel (default, no extra package) or the original basicsr RRDBNet."),
            ],
            outputs=[io.UpscaleModel.Output(display_name="upscale_model")],
        )

    @classmethod
    def validate_inputs(cls, model_name):
        return model_file_problem("upscale_models", model_name, "Diff2Lip Upscaler Loader") or True

    @classmethod
    def execute(cls, model_name, backend):
        from ..models.realesrgan import load_realesrgan

        path = resolve_model_file("upscale_models", model_name, "Diff2Lip Upscaler Loader")
        return io.NodeOutput(_upscalers.get(path, torch_device(), torch.float32,
                                            lambda: load_realesrgan(path, backend=backend), extra=(backend,)))


def _sampling_inputs() -> list:
    from ..pipelines.diff2lip.presets import QUALITY_PRESETS

    return [
        io.Combo.Input("quality", options=[*QUALITY_PRESETS, "custom"], default="high",
                       tooltip="DDIM steps: fast 10, balanced 25 (the release), high 50, ultra 100."),
        io.Int.Input("custom_steps", default=25, min=1, max=1000, tooltip="Steps when quality = custom."),
        io.Int.Input("seed", default=7, min=0, max=2**31 - 1, control_after_generate=True,
                     tooltip="One noise draw shared by all frames, as the reference (7 = reference seed)."),
        io.Int.Input("batch_size", default=8, min=1, max=256, tooltip="Face crops per UNet call."),
    ]


def _face_inputs() -> list:
    return [
        io.Combo.Input("face", options=["largest", "most confident", "by index (left to right)"],
                       default="largest", tooltip="Which face to sync when there are several."),
        io.Int.Input("face_index", default=0, min=0, max=32, tooltip="Used with 'by index': 0 = leftmost."),
        io.Int.Input("pad_top", default=0, min=0, max=512, tooltip="Pixels added above the face box."),
        io.Int.Input("pad_bottom", default=10, min=0, max=512,
                     tooltip="Pixels added below the face box (the reference uses 10 to include the chin)."),
        io.Int.Input("pad_left", default=0, min=0, max=512, tooltip="Pixels added left of the face box."),
        io.Int.Input("pad_right", default=0, min=0, max=512, tooltip="Pixels added right of the face box."),
    ]


def _pick(face: str, face_index: int):
    return {"largest": "largest", "most confident": "best"}.get(face, face_index)


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
        return io.Schema(
            node_id="Diff2LipLipSync",
            display_name="Diff2Lip Lip Sync",
            category=CATEGORY,
            description="Re-synthesises the mouth of every frame to the audio (DDIM on the Diff2Lip UNet). Frames "
                        "without a face pass through unchanged and are counted in the report. Outputs the audio "
                        "trimmed/padded to the video and the generated region as a MASK.",
            inputs=[
                io.Image.Input("frames", tooltip="Video frames (IMAGE batch)."),
                io.Audio.Input("audio", tooltip="Speech to sync to: any sample rate and channel count."),
                io.Float.Input("fps", default=25.0, min=1.0, max=240.0, step=0.001,
                               tooltip="Frame rate of the frames; audio windows are placed by time (no re-timing)."),
                DIFF2LIP_MODEL.Input("model"),
                FACE_DETECTOR.Input("detector"),
                *_sampling_inputs(),
                *_face_inputs(),
                io.Boolean.Input("close_mouth_in_silence", default=False,
                                 tooltip="Where a voice-activity detector (silero-vad) hears no speech, keep the "
                                         "original mouth instead of generating one from noise."),
                io.Float.Input("flow_guided_start", default=0.0, min=0.0, max=0.9, step=0.05,
                               tooltip="Experimental, off by default: start each frame's sampling from the previous "
                                       "frame's result warped by optical flow, skipping this fraction of the steps "
                                       "(frames are then sampled one by one). Not verified with the released "
                                       "weights; see README."),
                io.UpscaleModel.Input("upscale_model", optional=True,
                                      tooltip="Super-resolution for the 128 px generated crop before it is resized "
                                              "into a larger face box (e.g. RealESRGAN_x2plus via Load Upscale Model)."),
            ],
            outputs=[io.Image.Output(display_name="frames"), io.Audio.Output(display_name="audio"),
                     io.Mask.Output(display_name="generated_mask"), io.String.Output(display_name="report")],
        )

    @classmethod
    def validate_inputs(cls, quality, custom_steps):  # named inputs only: **kwargs disables built-in checks
        return _validate_steps("Diff2Lip Lip Sync", quality, custom_steps)

    @classmethod
    def execute(cls, frames, audio, fps, model, detector, quality, custom_steps, seed, batch_size, face, face_index,
                pad_top, pad_bottom, pad_left, pad_right, close_mouth_in_silence, flow_guided_start=0.0,
                upscale_model=None):
        from ..pipelines.audio_enhance import speech_activity
        from ..pipelines.diff2lip import lipsync
        from ..pipelines.diff2lip.presets import steps_for
        from ..pipelines.media import audio_to_mono, fit_audio_to_frames, make_audio

        steps = steps_for(quality, custom_steps)
        array = image_to_numpy(frames)
        n = len(array)
        # The mouth follows the audio as it is returned: trimmed to the video, or padded with silence (mouth closes)
        fitted_wave = fit_audio_to_frames(audio["waveform"], audio["sample_rate"], n, fps)
        wav = audio_to_mono(fitted_wave, audio["sample_rate"])
        active = speech_activity(wav, fps, n) if close_mouth_in_silence else None
        upscale = _crop_upscaler(upscale_model, model.device)
        total_estimate = n + -(-n // batch_size) * steps
        out, mask, report = lipsync(array, wav, fps, model.module, detector, steps=steps, seed=seed,
                                    batch_size=batch_size, pads=(pad_top, pad_bottom, pad_left, pad_right),
                                    pick=_pick(face, face_index),
                                    progress=progress_callback(total_estimate), upscale=upscale, active_frames=active,
                                    flow_start=flow_guided_start)
        report["steps"] = steps
        if active is not None:
            report["silent_frames_kept"] = int((~active).sum())
        if upscale is not None:
            report["upscale_ms_per_frame"] = round(upscale.ms_per_crop(), 1)
        if len(report["passed_through_frames"]) > 50:  # keep the report readable; the count stays
            report.pop("passed_through_frames")
        text = json.dumps(report, default=float)
        log.info("Diff2Lip Lip Sync: %s", text)
        return io.NodeOutput(numpy_to_image(out), make_audio(fitted_wave, audio["sample_rate"]), torch.from_numpy(mask),
                             text, ui={"text": [text]})


class Diff2LipCropFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipCropFaces",
            display_name="Diff2Lip Crop Faces",
            category=CATEGORY,
            description="Step 1 of 3 of the split lip sync: finds, smooths and crops the face of every frame. The "
                        "crops travel as a dict ({'samples': [M,3,S,S] in 0..1, boxes, frame indices}) and are also "
                        "shown as IMAGE. Frames without a face are left out (they pass through at paste time).",
            inputs=[io.Image.Input("frames", tooltip="Video frames (IMAGE batch)."), FACE_DETECTOR.Input("detector"),
                    io.Int.Input("crop_size", default=128, min=16, max=1024,
                                 tooltip="The model's input size: 128 for the released checkpoint."),
                    *_face_inputs()],
            outputs=[DIFF2LIP_CROPS.Output(display_name="crops"), io.Image.Output(display_name="crop_images")],
        )

    @classmethod
    def execute(cls, frames, detector, crop_size, face, face_index, pad_top, pad_bottom, pad_left, pad_right):
        from ..pipelines.diff2lip import crop_faces, locate_faces

        array = image_to_numpy(frames)
        boxes = locate_faces(array, detector, _pick(face, face_index), (pad_top, pad_bottom, pad_left, pad_right),
                             progress=progress_callback(len(array)))
        indices = sorted(boxes)
        if not indices:
            log.warning("Diff2Lip Crop Faces: no face in any of the %d frames; everything will pass through",
                        len(array))
        stacked = np.stack([boxes[i] for i in indices]) if indices else np.zeros((0, 4), np.int64)
        crops = crop_faces([array[i] for i in indices], stacked, crop_size) if indices else \
            np.zeros((0, crop_size, crop_size, 3), np.float32)
        value = {"samples": torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous(), "boxes": stacked,
                 "frame_index": indices, "num_frames": len(array), "frame_hw": tuple(array.shape[1:3])}
        return io.NodeOutput(value, numpy_to_image(crops) if indices else torch.zeros(1, crop_size, crop_size, 3))


def _crops_as_images(crops: dict):
    return crops["samples"].permute(0, 2, 3, 1).contiguous().numpy()


class Diff2LipSampleFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipSampleFaces",
            display_name="Diff2Lip Sample Faces",
            category=CATEGORY,
            description="Step 2 of 3: re-generates the lower half of each face crop for the audio at that frame's "
                        "time (DDIM on the Diff2Lip UNet).",
            inputs=[DIFF2LIP_CROPS.Input("crops"), io.Audio.Input("audio", tooltip="Speech to sync to."),
                    io.Float.Input("fps", default=25.0, min=1.0, max=240.0, step=0.001,
                                   tooltip="Frame rate of the cropped video."),
                    DIFF2LIP_MODEL.Input("model"), *_sampling_inputs(),
                    io.Boolean.Input("close_mouth_in_silence", default=False,
                                     tooltip="Keep the original mouth where silero-vad hears no speech.")],
            outputs=[DIFF2LIP_CROPS.Output(display_name="crops"), io.Image.Output(display_name="crop_images")],
        )

    @classmethod
    def validate_inputs(cls, quality, custom_steps):  # named inputs only: **kwargs disables built-in checks
        return _validate_steps("Diff2Lip Sample Faces", quality, custom_steps)

    @classmethod
    def execute(cls, crops, audio, fps, model, quality, custom_steps, seed, batch_size, close_mouth_in_silence):
        from ..pipelines.audio_enhance import speech_activity
        from ..pipelines.diff2lip import generate_faces, mel_windows, melspectrogram
        from ..pipelines.diff2lip.presets import steps_for
        from ..pipelines.media import audio_to_mono, fit_audio_to_frames

        steps = steps_for(quality, custom_steps)
        fitted_wave = fit_audio_to_frames(audio["waveform"], audio["sample_rate"], crops["num_frames"], fps)
        wav = audio_to_mono(fitted_wave, audio["sample_rate"])  # as Lip Sync: silence past the end of the audio
        mels = mel_windows(melspectrogram(wav), fps=fps, num_frames=crops["num_frames"])
        active = speech_activity(wav, fps, crops["num_frames"]) if close_mouth_in_silence else None
        images = _crops_as_images(crops)
        indices = crops["frame_index"]
        todo = [k for k, i in enumerate(indices) if active is None or active[i]]
        batches = [todo[k:k + batch_size] for k in range(0, len(todo), batch_size)]
        progress = progress_callback(max(1, len(batches) * steps))
        out = images.copy()
        for b, batch in enumerate(batches):
            out[batch] = generate_faces(model.module, images[batch], mels[[indices[k] for k in batch]], steps, seed,
                                        lambda done, _t, base=b * steps: progress(base + done, len(batches) * steps))
        value = dict(crops, samples=torch.from_numpy(out).permute(0, 3, 1, 2).contiguous())
        return io.NodeOutput(value, numpy_to_image(out) if len(out) else torch.zeros(1, 8, 8, 3))


class Diff2LipPasteFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipPasteFaces",
            display_name="Diff2Lip Paste Faces",
            category=CATEGORY,
            description="Step 3 of 3: pastes the generated lower half of each crop back into its frame. Optionally "
                        "pass edited crops (e.g. after a face-restoration node) as 'faces', and a super-resolution "
                        "model for boxes larger than the crop.",
            inputs=[io.Image.Input("frames", tooltip="The frames that were cropped."), DIFF2LIP_CROPS.Input("crops"),
                    io.Image.Input("faces", optional=True,
                                   tooltip="Replacement crops, same count as the crops (any size; resized into the "
                                           "boxes)."),
                    io.UpscaleModel.Input("upscale_model", optional=True,
                                          tooltip="Super-resolution for crops smaller than their face box.")],
            outputs=[io.Image.Output(display_name="frames"), io.Mask.Output(display_name="generated_mask")],
        )

    @classmethod
    def execute(cls, frames, crops, faces=None, upscale_model=None):
        from ..pipelines.diff2lip import paste_generated

        array = image_to_numpy(frames)
        if (len(array), *array.shape[1:3]) != (crops["num_frames"], *crops["frame_hw"]):
            raise ValueError(f"Diff2Lip Paste Faces: the crops come from {crops['num_frames']} frames of "
                             f"{crops['frame_hw']}, not these {len(array)} of {array.shape[1:3]}: connect the frames "
                             "that went into Diff2Lip Crop Faces")
        generated = _crops_as_images(crops) if faces is None else image_to_numpy(faces)
        if len(generated) != len(crops["frame_index"]):
            raise ValueError(f"Diff2Lip Paste Faces: faces has {len(generated)} images for "
                             f"{len(crops['frame_index'])} crops")
        output, mask = array.copy(), np.zeros(array.shape[:3], np.float32)
        paste_generated(output, mask, crops["frame_index"], generated, crops["boxes"],
                        upscale=_crop_upscaler(upscale_model, torch_device()))
        return io.NodeOutput(numpy_to_image(output), torch.from_numpy(mask))


class Diff2LipAudioCleanup(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
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
        from ..pipelines.audio_enhance import enhance_speech
        from ..pipelines.media import audio_to_mono, make_audio

        wav = audio_to_mono(audio["waveform"], audio["sample_rate"])
        loudness_ok = len(wav) >= 0.4 * 16000  # BS.1770 gating blocks are 400 ms long
        if not loudness_ok and (compress or target_lufs > -70):
            log.warning("Diff2Lip Audio Clean-up: %.2f s of audio is shorter than the 0.4 s loudness measurement "
                        "window; loudness normalisation and compression are skipped", len(wav) / 16000)
        cleaned = enhance_speech(wav, 16000, denoise=denoise, compress=compress and loudness_ok,
                                 target_lufs=None if target_lufs <= -70 or not loudness_ok else target_lufs,
                                 offset_ms=offset_ms)
        return io.NodeOutput(make_audio(cleaned, 16000))


def _frames_and_mask(frames, mask):
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
                io.Combo.Input("mode", options=["lip mask", "hard box"], default="lip mask",
                               tooltip="'hard box' = the plain generated region (the reference's paste)."),
                io.Float.Input("expansion", default=1.2, min=0.5, max=3.0, step=0.05,
                               tooltip="Lip polygon scale around its centre."),
                io.Float.Input("feather", default=0.2, min=0.0, max=1.0, step=0.01,
                               tooltip="Soft edge width as a fraction of the mouth width."),
                io.Float.Input("adaptive_gain", default=1.0, min=0.0, max=5.0, step=0.1,
                               tooltip="How much the expansion grows with the mouth-opening ratio (0 = fixed)."),
                io.Int.Input("smooth_window", default=5, min=1, max=31,
                             tooltip="Frames over which the opening ratio is smoothed."),
                io.Combo.Input("landmarks", options=[FACEMESH, *model_files("face_detection")], default=FACEMESH,
                               tooltip="Lip landmarks: MediaPipe FaceMesh (built in), or face-alignment's 68-point "
                                       "FAN (2DFAN4-11f355bf06.pth.tar in models/face_detection)."),
            ],
            outputs=[io.Image.Output(display_name="frames"), io.Mask.Output(display_name="composite_mask")],
        )

    @classmethod
    def execute(cls, original, generated, generated_mask, mode, expansion, feather, adaptive_gain, smooth_window,
                landmarks=FACEMESH):
        from ..pipelines.diff2lip_enhance import FanLandmarker, composite, facemesh_landmarks, lip_composite_masks

        orig = image_to_numpy(original)
        gen, region = _frames_and_mask(generated, generated_mask)
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
                    io.Combo.Input("method", options=["lab_meanstd", "histogram"], default="lab_meanstd",
                                   tooltip="Lab mean/std transfer, or per-channel Lab histogram matching."),
                    io.Float.Input("band_px", default=8.0, min=1.0, max=64.0, step=1.0,
                                   tooltip="Width of the comparison band along the mask edge.")],
            outputs=[io.Image.Output(display_name="frames")],
        )

    @classmethod
    def execute(cls, original, generated, mask, method, band_px):
        from ..pipelines.diff2lip_enhance import match_color

        gen, masks = _frames_and_mask(generated, mask)
        out = match_color(image_to_numpy(original), gen, masks, method=method, band_px=band_px,
                          progress=progress_callback(len(gen)))
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
                    io.Float.Input("strength", default=0.5, min=0.0, max=1.0, step=0.05,
                                   tooltip="Weight of the warped previous frame."),
                    io.Combo.Input("method", options=["flow (DIS)", "flow (Farneback)", "plain EMA"],
                                   default="flow (DIS)", tooltip="Plain EMA is kept for comparison: it ghosts motion.")],
            outputs=[io.Image.Output(display_name="frames")],
        )

    @classmethod
    def execute(cls, frames, mask, strength, method):
        from ..pipelines.diff2lip_enhance import ema_temporal_smooth, flow_temporal_smooth

        array, masks = _frames_and_mask(frames, mask)
        if method == "plain EMA":
            out = ema_temporal_smooth(array, masks, strength)
        else:
            out = flow_temporal_smooth(array, masks, strength, method="dis" if "DIS" in method else "farneback",
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
                    io.Combo.Input("method", options=["bilateral", "nlm", "guided"], default="bilateral",
                                   tooltip="bilateral (fast), non-local means (strongest, slower) or guided filter."),
                    io.Float.Input("strength", default=0.5, min=0.0, max=1.0, step=0.05,
                                   tooltip="Filter range: higher removes more noise (bypass the node to disable).")],
            outputs=[io.Image.Output(display_name="frames")],
        )

    @classmethod
    def execute(cls, frames, mask, method, strength):
        from ..pipelines.diff2lip_enhance import denoise_region

        array, masks = _frames_and_mask(frames, mask)
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
                    io.Float.Input("strength", default=0.3, min=0.0, max=1.0, step=0.05,
                                   tooltip="Unsharp amount; 0 leaves the frames unchanged."),
                    io.Float.Input("sigma", default=1.0, min=0.3, max=5.0, step=0.1,
                                   tooltip="Blur radius of the unsharp mask (size of the detail boosted).")],
            outputs=[io.Image.Output(display_name="frames")],
        )

    @classmethod
    def execute(cls, frames, mask, strength, sigma):
        from ..pipelines.diff2lip_enhance import sharpen_region

        array, masks = _frames_and_mask(frames, mask)
        out = sharpen_region(array, masks, strength=strength, sigma=sigma, progress=progress_callback(len(array)))
        return io.NodeOutput(numpy_to_image(out))


class Diff2LipQualityMetrics(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
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

        out, region = _frames_and_mask(output, generated_mask)
        composite = None if composite_mask is None else _frames_and_mask(output, composite_mask)[1]
        report = quality_report(image_to_numpy(original), out, region, composite_mask=composite, landmarks=landmarks)
        text = json.dumps(report, default=float, indent=1)
        log.info("Diff2Lip Quality Metrics: %s", text)
        return io.NodeOutput(text, ui={"text": [text]})


NODES = [Diff2LipModelLoader, Diff2LipModelInfo, Diff2LipFaceDetectorLoader, Diff2LipUpscalerLoader, Diff2LipLipSync,
         Diff2LipCropFaces, Diff2LipSampleFaces, Diff2LipPasteFaces, Diff2LipAudioCleanup, Diff2LipLipMaskComposite, Diff2LipColorMatch, Diff2LipTemporalSmooth,
         Diff2LipDenoiseRegion, Diff2LipSharpen, Diff2LipQualityMetrics]
