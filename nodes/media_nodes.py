"""Media nodes the pack needs because core's LoadAudio depends on torchaudio (absent on many installs)."""
from __future__ import annotations

import hashlib
import os

import folder_paths
from comfy_api.latest import io

CATEGORY = "TalkingHead/media"


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
        if not folder_paths.exists_annotated_filepath(audio):
            return f"Load Audio (TalkingHead): file '{audio}' is not in the input folder; upload it or copy it there."
        return True

    @classmethod
    def fingerprint_inputs(cls, audio):
        with open(folder_paths.get_annotated_filepath(audio), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    @classmethod
    def execute(cls, audio):
        from ..pipelines.media import read_audio

        return io.NodeOutput(read_audio(folder_paths.get_annotated_filepath(audio)))


NODES = [TalkingHeadLoadAudio]
