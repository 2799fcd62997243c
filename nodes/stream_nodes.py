"""Stream nodes: a video file as a lazy frame stream, the Diff2Lip stages on a stream, converters to and from IMAGE,
and the sink that encodes a stream chunk by chunk into a core VIDEO.  A stream is a description (source + stages),
so these nodes are instant; the work happens, in bounded memory, when a sink or a converter iterates it."""
from __future__ import annotations

import json
import os

import comfy.model_management as mm
import folder_paths
import torch
from comfy_api.latest import io

from .common import image_to_numpy, log, progress_callback
from .guards import check_audio, check_finite, check_fps, file_signature, input_file
from .diff2lip_enhance_nodes import (FACEMESH, TEMPORAL_METHODS, color_match_settings, denoise_settings,
                                     lip_mask_settings, sharpen_settings, temporal_settings)
from .diff2lip_lipsync_nodes import _batch_size, _crop_upscaler, _pick, _validate_steps, lip_sync_inputs
from .paths import resolve_model_file
from .sockets import FRAME_STREAM

CATEGORY = "TalkingHead/stream"
LOAD_VIDEO = "Load Video as Stream"
DIFF2LIP = "TalkingHead/Diff2Lip/stream"
STREAM_TIP = "A lazy frame stream (video file + stages); decoded and processed chunk by chunk by the sink."


def _video_files() -> list[str]:
    input_dir = folder_paths.get_input_directory()
    files = [f for f in os.listdir(input_dir) if os.path.isfile(os.path.join(input_dir, f))]
    return sorted(folder_paths.filter_files_content_types(files, ["video"]))


def _fail(node: str, error: Exception):
    return ValueError(f"{node}: {error}")


class TalkingHeadLoadVideoStream(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TalkingHeadLoadVideoStream",
            display_name="Load Video as Stream",
            category=CATEGORY,
            description="A video file from the input folder as a frame stream: nothing is decoded here; stages and "
                        "the sink read it chunk by chunk, so clips of any length fit in memory. Frames are the same "
                        "values as core Load Video gives. A frame range lets long clips be split into parts.",
            inputs=[
                io.Combo.Input("video", options=_video_files(), tooltip="Video file in ComfyUI's input folder."),
                io.Int.Input("start_frame", default=0, min=0, max=10**8, tooltip="First frame of the range."),
                io.Int.Input("frame_count", default=0, min=0, max=10**8,
                             tooltip="Frames in the range; 0 = to the end of the clip."),
            ],
            outputs=[FRAME_STREAM.Output(display_name="stream"), io.Audio.Output(display_name="audio"),
                     io.Float.Output(display_name="fps"), io.Int.Output(display_name="frame_count")],
        )

    @classmethod
    def validate_inputs(cls, video):
        try:
            input_file(video, LOAD_VIDEO, "video")
        except FileNotFoundError as error:
            return str(error)
        return True

    @classmethod
    def fingerprint_inputs(cls, video, start_frame, frame_count):
        try:  # path, size and mtime: a long video is not read to decide whether it changed
            return f"{file_signature(input_file(video, LOAD_VIDEO, 'video'))}:{start_frame}:{frame_count}"
        except FileNotFoundError:
            return video

    @classmethod
    def execute(cls, video, start_frame, frame_count):
        from ..pipelines.stream import FrameStream, VideoError, VideoSource

        try:
            source = VideoSource(str(input_file(video, LOAD_VIDEO, "video")), start_frame, frame_count)
            info = source.info()
        except VideoError as e:
            raise _fail(f"{LOAD_VIDEO}: input 'video'", e) from e
        check_fps(float(info.fps), LOAD_VIDEO, "video (its frame rate)")
        if info.audio is None:
            log.info("%s: %s has no audio track; the output has none unless the sink gets an audio input",
                     LOAD_VIDEO, video)
        else:
            check_audio(info.audio, LOAD_VIDEO, "video (its audio track)")
        return io.NodeOutput(FrameStream(source), info.audio, float(info.fps), info.num_frames)


class TalkingHeadImagesToStream(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TalkingHeadImagesToStream",
            display_name="Images to Stream",
            category=CATEGORY,
            description="An IMAGE batch (e.g. from another pack) as a frame stream, for short clips already in memory.",
            inputs=[io.Image.Input("images"),
                    io.Float.Input("fps", default=25.0, min=1.0, max=240.0, step=0.001,
                                   tooltip="Frame rate (29.97 and 23.976 are stored as 30000/1001 and 24000/1001)."),
                    io.Audio.Input("audio", optional=True, tooltip="Sound that belongs to the frames.")],
            outputs=[FRAME_STREAM.Output(display_name="stream")],
        )

    @classmethod
    def execute(cls, images, fps, audio=None):
        from ..pipelines.media import exact_rate
        from ..pipelines.stream import ArraySource, FrameStream

        check_finite(images, "Images to Stream", "images")
        if audio is not None:
            check_audio(audio, "Images to Stream")
        rate = exact_rate(check_fps(fps, "Images to Stream"))
        return io.NodeOutput(FrameStream(ArraySource(image_to_numpy(images), rate, audio)))


class TalkingHeadStreamToImages(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TalkingHeadStreamToImages",
            display_name="Stream to Images",
            category=CATEGORY,
            description="Runs a stream and collects every frame as an IMAGE batch (and its latest mask): whole-clip "
                        "memory, for short clips and for other packs' IMAGE nodes.",
            inputs=[FRAME_STREAM.Input("stream", tooltip=STREAM_TIP),
                    io.Int.Input("chunk_size", default=16, min=1, max=1024, tooltip="Frames decoded per step.")],
            outputs=[io.Image.Output(display_name="images"), io.Mask.Output(display_name="mask"),
                     io.Audio.Output(display_name="audio"), io.Float.Output(display_name="fps")],
        )

    @classmethod
    def execute(cls, stream, chunk_size):
        info = stream.info()
        progress = progress_callback(info.num_frames)
        frames, masks, count = [], [], 0
        for chunk in stream.chunks(chunk_size):
            frames += [torch.from_numpy(item.image) for item in chunk]
            masks += [torch.from_numpy(item.mask) for item in chunk]
            count += len(chunk)
            progress(count, info.num_frames)
        return io.NodeOutput(torch.stack(frames), torch.stack(masks), info.audio, float(info.fps))


class TalkingHeadEncodeStream(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        from ..pipelines.stream import CODECS

        return io.Schema(
            node_id="TalkingHeadEncodeStream",
            display_name="Encode Stream to Video",
            category=CATEGORY,
            description="Runs the stream chunk by chunk and encodes it into an mp4 (written under a temporary name "
                        "and renamed when complete: a cancelled run leaves no file). Keeps the exact frame rate and "
                        "frame count; muxes the stream's audio (the video's own, or lip sync's speech) at its own "
                        "sample rate and channels. Connect the VIDEO to core Save Video.",
            inputs=[FRAME_STREAM.Input("stream", tooltip=STREAM_TIP),
                    io.Combo.Input("codec", options=list(CODECS), default="h264",
                                   tooltip="h264 (plays everywhere), h265 (smaller), or lossless RGB H.264 (for parts "
                                           "that are joined later)."),
                    io.Int.Input("crf", default=18, min=0, max=51,
                                 tooltip="Quality: lower is better and larger (18 is visually lossless; ignored by "
                                         "the lossless codec)."),
                    io.Int.Input("chunk_size", default=8, min=1, max=1024,
                                 tooltip="Frames decoded, processed and encoded per step (memory vs overhead; the "
                                         "pixels do not depend on it)."),
                    io.Audio.Input("audio", optional=True,
                                   tooltip="Mux this audio instead of the stream's own.")],
            outputs=[io.Video.Output(display_name="video"), io.String.Output(display_name="report")],
            is_output_node=True,  # shows its report; runs even before Save Video is connected
        )

    @classmethod
    def execute(cls, stream, codec, crf, chunk_size, audio=None):
        from comfy_api.latest import InputImpl

        from ..pipelines.stream import VideoError, encode_stream

        if audio is not None:
            check_audio(audio, "Encode Stream to Video")
        folder = os.path.join(folder_paths.get_temp_directory(), "talkinghead")
        info = stream.info()
        try:
            path, report = encode_stream(stream, os.path.join(folder, f"stream_{stream.signature()[:16]}.mp4"),
                                         crf=crf, codec=codec, chunk_size=chunk_size, audio=audio,
                                         progress=progress_callback(info.num_frames))
        except VideoError as e:
            raise _fail("Encode Stream to Video", e) from e
        text = json.dumps(report, default=float)
        log.info("Encode Stream to Video: %s", text)
        return io.NodeOutput(InputImpl.VideoFromFile(str(path)), text, ui={"text": [text]})


# ----------------------------------------------------------------------------------------------------------------
# Diff2Lip stages


class Diff2LipLipSyncStream(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipLipSyncStream",
            display_name="Diff2Lip Lip Sync (stream)",
            category=DIFF2LIP,
            description="Diff2Lip Lip Sync as a stream stage: the same frames as the IMAGE node, in bounded memory. "
                        "The stream's audio becomes the driving speech fitted to the video (silence past its end).",
            inputs=[
                FRAME_STREAM.Input("stream", tooltip=STREAM_TIP),
                io.Audio.Input("audio", tooltip="Speech to sync to: any sample rate and channel count."),
                *lip_sync_inputs(),
            ],
            outputs=[FRAME_STREAM.Output(display_name="stream"), io.Audio.Output(display_name="audio")],
        )

    @classmethod
    def validate_inputs(cls, quality, custom_steps):
        return _validate_steps("Diff2Lip Lip Sync (stream)", quality, custom_steps)

    @classmethod
    def execute(cls, stream, audio, model, detector, quality, custom_steps, seed, batch_size, face, face_index,
                pad_top, pad_bottom, pad_left, pad_right, paste, close_mouth_in_silence, flow_guided_start=0.0,
                max_gap=5, upscale_model=None):
        from ..pipelines.diff2lip.presets import PASTE_MODES, steps_for
        from ..pipelines.stream.diff2lip import LipSyncStage

        check_audio(audio, "Diff2Lip Lip Sync (stream)")
        steps = steps_for(quality, custom_steps)
        stage = LipSyncStage(audio=audio, model=model.module, detect=detector,
                             upscale=_crop_upscaler(upscale_model, model.device),
                             check_cancel=mm.throw_exception_if_processing_interrupted,
                             identity=f"{model.name}|{detector!r}|{upscale_model!r}",
                             audio_signature=_audio_signature(audio), steps=steps, seed=seed,
                             batch_size=_batch_size(batch_size, model),
                             pads=(pad_top, pad_bottom, pad_left, pad_right), pick=_pick(face, face_index),
                             paste_whole_box=PASTE_MODES[paste], paste_name=paste,
                             close_mouth_in_silence=close_mouth_in_silence, flow_start=flow_guided_start,
                             max_gap=max_gap)
        out = stream.then(stage)
        return io.NodeOutput(out, stage.fitted_audio(stream.info()))


def _audio_signature(audio) -> str:
    import hashlib

    wave = audio["waveform"].detach().cpu().float().contiguous().numpy()
    return f"{audio['sample_rate']}:{hashlib.sha256(wave.tobytes()).hexdigest()}"


class Diff2LipLipMaskCompositeStream(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipLipMaskCompositeStream",
            display_name="Diff2Lip Lip-Mask Composite (stream)",
            category=DIFF2LIP,
            description="Soft lip-shaped composite of the generated mouth over the original frame (see the IMAGE "
                        "node); works on a stream after Diff2Lip Lip Sync (stream).",
            inputs=[
                FRAME_STREAM.Input("stream", tooltip=STREAM_TIP),
                *lip_mask_settings(),
            ],
            outputs=[FRAME_STREAM.Output(display_name="stream")],
        )

    @classmethod
    def execute(cls, stream, mode, expansion, feather, adaptive_gain, smooth_window, landmarks=FACEMESH):
        from ..pipelines.diff2lip_enhance import FanLandmarker, facemesh_landmarks
        from ..pipelines.stream.diff2lip import LipMaskCompositeStage

        if smooth_window % 2 == 0:
            raise ValueError("Diff2Lip Lip-Mask Composite (stream): smooth_window must be odd; use "
                             f"{smooth_window + 1}")
        if landmarks == FACEMESH:
            landmarker, scheme = facemesh_landmarks, "facemesh"
        else:
            path = resolve_model_file("face_detection", landmarks, "Diff2Lip Lip-Mask Composite (stream)")
            from .common import torch_device

            landmarker, scheme = FanLandmarker(path, device=str(torch_device())), "fan68"
        return io.NodeOutput(stream.then(LipMaskCompositeStage(
            landmarker=landmarker, identity=landmarks, scheme=scheme, hard_box=mode == "hard box",
            expansion=expansion, feather=feather, adaptive_gain=adaptive_gain, smooth_window=smooth_window)))


class Diff2LipColorMatchStream(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipColorMatchStream",
            display_name="Diff2Lip Colour Match (stream)",
            category=DIFF2LIP,
            description="Colour Match on a stream, in the stream's latest mask (the composite mask after a Lip-Mask "
                        "Composite, else the generated region).",
            inputs=[FRAME_STREAM.Input("stream", tooltip=STREAM_TIP),
                    *color_match_settings()],
            outputs=[FRAME_STREAM.Output(display_name="stream")],
        )

    @classmethod
    def execute(cls, stream, method, band_px, white_balance="off"):
        from ..pipelines.stream.diff2lip import ColorMatchStage

        return io.NodeOutput(stream.then(ColorMatchStage(method, band_px, white_balance)))


class Diff2LipTemporalSmoothStream(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipTemporalSmoothStream",
            display_name="Diff2Lip Temporal Smooth (stream)",
            category=DIFF2LIP,
            description="Temporal Smooth on a stream (the previous frame is carried across chunks).",
            inputs=[FRAME_STREAM.Input("stream", tooltip=STREAM_TIP),
                    *temporal_settings()],
            outputs=[FRAME_STREAM.Output(display_name="stream")],
        )

    @classmethod
    def execute(cls, stream, strength, method):
        from ..pipelines.stream.diff2lip import TemporalSmoothStage

        return io.NodeOutput(stream.then(TemporalSmoothStage(strength, TEMPORAL_METHODS[method])))


class Diff2LipDenoiseRegionStream(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipDenoiseRegionStream",
            display_name="Diff2Lip Artifact Reduction (stream)",
            category=DIFF2LIP,
            description="Artifact Reduction on a stream, in the stream's latest mask.",
            inputs=[FRAME_STREAM.Input("stream", tooltip=STREAM_TIP),
                    *denoise_settings()],
            outputs=[FRAME_STREAM.Output(display_name="stream")],
        )

    @classmethod
    def execute(cls, stream, method, strength):
        from ..pipelines.stream.diff2lip import DenoiseStage

        return io.NodeOutput(stream.then(DenoiseStage(method, strength)))


class Diff2LipSharpenStream(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="Diff2LipSharpenStream",
            display_name="Diff2Lip Sharpen Mouth (stream)",
            category=DIFF2LIP,
            description="Sharpen Mouth on a stream, in the stream's latest mask.",
            inputs=[FRAME_STREAM.Input("stream", tooltip=STREAM_TIP),
                    *sharpen_settings()],
            outputs=[FRAME_STREAM.Output(display_name="stream")],
        )

    @classmethod
    def execute(cls, stream, strength, sigma):
        from ..pipelines.stream.diff2lip import SharpenStage

        return io.NodeOutput(stream.then(SharpenStage(strength, sigma)))


NODES = [TalkingHeadLoadVideoStream, TalkingHeadImagesToStream, TalkingHeadStreamToImages, TalkingHeadEncodeStream,
         Diff2LipLipSyncStream, Diff2LipLipMaskCompositeStream, Diff2LipColorMatchStream, Diff2LipTemporalSmoothStream,
         Diff2LipDenoiseRegionStream, Diff2LipSharpenStream]
