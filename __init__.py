"""Talking-head nodes for ComfyUI: Diff2Lip lip sync and GAGAvatar one-shot Gaussian head avatars.

Importing this package has no side effects: ComfyUI calls :func:`comfy_entrypoint`, which registers the model
folders and returns the node list.  ``models/`` and ``pipelines/`` never import ComfyUI and can be used on their own.
"""


async def comfy_entrypoint():
    from .nodes import TalkingHeadExtension

    return TalkingHeadExtension()
