"""ComfyUI adapters of the pack.  Importing this package requires ComfyUI (``comfy_api``, ``folder_paths``)."""
from __future__ import annotations

from comfy_api.latest import ComfyExtension

from .paths import register_model_folders

register_model_folders()

# Folders must be registered before the node schemas list their files.
from . import (batch_nodes, diff2lip_enhance_nodes, diff2lip_lipsync_nodes, diff2lip_loader_nodes,  # noqa: E402
               gagavatar_enhance_nodes, gagavatar_nodes, gagavatar_stream_nodes, gagavatar_track_nodes, media_nodes,
               metrics_nodes, stream_nodes)


class TalkingHeadExtension(ComfyExtension):
    async def get_node_list(self):
        return [*media_nodes.NODES, *diff2lip_loader_nodes.NODES, *diff2lip_lipsync_nodes.NODES,
                *diff2lip_enhance_nodes.NODES, *gagavatar_nodes.NODES,
                *gagavatar_enhance_nodes.NODES, *gagavatar_track_nodes.NODES, *metrics_nodes.NODES,
                *batch_nodes.NODES, *stream_nodes.NODES, *gagavatar_stream_nodes.NODES]
