"""ComfyUI adapters of the pack.  Importing this package requires ComfyUI (``comfy_api``, ``folder_paths``)."""
from __future__ import annotations

from comfy_api.latest import ComfyExtension

from .paths import register_model_folders

register_model_folders()

from . import diff2lip_nodes, gagavatar_enhance_nodes, gagavatar_nodes, media_nodes  # noqa: E402  (folders must be registered before schemas list their files)


class TalkingHeadExtension(ComfyExtension):
    async def get_node_list(self):
        return [*media_nodes.NODES, *diff2lip_nodes.NODES, *gagavatar_nodes.NODES,
                *gagavatar_enhance_nodes.NODES]
