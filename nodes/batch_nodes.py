"""The lossless frame sink the batch runner puts in place of a workflow's Save Video (scripts/batch)."""
from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

CATEGORY = "TalkingHead/media"


class TalkingHeadSaveFramesLossless(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TalkingHeadSaveFramesLossless",
            display_name="Save Frames Lossless (TalkingHead)",
            category=CATEGORY,
            description="Writes a range of an IMAGE batch to the output folder as a lossless video (FFV1 in "
                        "Matroska), quantised to 8 bits exactly as Save Video does. The batch runner uses it to keep "
                        "only a chunk's own frames; the final video is encoded once from these chunks.",
            inputs=[
                io.Image.Input("images"),
                io.Float.Input("fps", default=25.0, min=0.01, max=1000.0, step=0.001,
                               tooltip="Frame rate written into the file."),
                io.String.Input("filename_prefix", default="talkinghead/chunk",
                                tooltip="Output subfolder/name prefix (a counter is appended)."),
                io.Int.Input("keep_start", default=0, min=0, max=2**31 - 1,
                             tooltip="First frame to keep (context frames before it are dropped)."),
                io.Int.Input("keep_count", default=0, min=0, max=2**31 - 1,
                             tooltip="Frames to keep from keep_start; 0 = to the end."),
            ],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images, fps, filename_prefix, keep_start, keep_count):
        from ..pipelines.lossless import LOSSLESS_SUFFIX, write_lossless

        total = images.shape[0]
        end = total if keep_count == 0 else keep_start + keep_count
        if keep_start >= total or end > total:
            raise ValueError(f"Save Frames Lossless: keep_start {keep_start} + keep_count {keep_count} is outside the "
                             f"{total} frames received; check the chunk's context frames")
        out_dir, name, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory())
        filename = f"{name}_{counter:05}{LOSSLESS_SUFFIX}"
        # The same 8-bit quantisation as core Save Video ((x * 255).clamp(0, 255).byte(), i.e. truncation).
        kept = images[keep_start:end]
        frames = ((kept[i] * 255).clamp(0, 255).byte().cpu().numpy() for i in range(len(kept)))
        write_lossless(os.path.join(out_dir, filename), frames, fps)
        return io.NodeOutput(ui={"images": [{"filename": filename, "subfolder": subfolder, "type": "output"}]})


NODES = [TalkingHeadSaveFramesLossless]
