"""Media nodes the pack needs because core's LoadAudio depends on torchaudio (absent on many installs)."""
from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

from .guards import file_signature, input_file

CATEGORY = "TalkingHead/media"
NODE = "Load Audio (TalkingHead)"


def _audio_files() -> list[str]:
    input_dir = folder_paths.get_input_directory()
    files = [f for f in os.listdir(input_dir) if os.path.isfile(os.path.join(input_dir, f))]
    return sorted(folder_paths.filter_files_content_types(files, ["audio", "video"]))


class TalkingHeadLoadAudio(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TalkingHeadLoadAudio",
            display_name="Load Audio (TalkingHead)",
            category=CATEGORY,
            description="Loads speech from an audio or video file in the input folder as AUDIO, without torchaudio "
                        "(soundfile, or PyAV for m4a/mp4/...). Any sample rate and channel count.",
            # No upload=audio: the frontend only builds the audio upload/preview widgets for core's own audio node
            # classes; on any other node that flag breaks the widget (checked in ComfyUI frontend 1.32).
            inputs=[io.Combo.Input("audio", options=_audio_files(),
                                   tooltip="Audio file (wav, flac, mp3, ogg) or a video whose sound track is used, "
                                           "from ComfyUI's input folder.")],
            outputs=[io.Audio.Output(display_name="audio")],
        )

    @classmethod
    def validate_inputs(cls, audio):
        try:
            input_file(audio, NODE, "audio")
        except FileNotFoundError as error:
            return str(error)
        return True

    @classmethod
    def fingerprint_inputs(cls, audio):
        # (path, size, mtime) instead of hashing the content: cheap, and nothing is read before validation passed.
        try:
            return file_signature(input_file(audio, NODE, "audio"))
        except FileNotFoundError:
            return audio

    @classmethod
    def execute(cls, audio):
        from ..pipelines.media import read_audio
        from ..pipelines.validation import check_audio

        path = input_file(audio, NODE, "audio")
        try:
            loaded = read_audio(path)
        except (ValueError, RuntimeError, OSError) as error:  # soundfile / PyAV errors on damaged files
            raise ValueError(f"{NODE}: cannot decode '{audio}' as audio ({type(error).__name__}: {error}); "
                             "convert it to wav or flac.") from None
        check_audio(loaded, NODE, "audio")
        return io.NodeOutput(loaded)


NODES = [TalkingHeadLoadAudio]
