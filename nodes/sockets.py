"""The pack's custom socket types, defined once (a type's name is what ComfyUI matches links by)."""
from __future__ import annotations

from comfy_api.latest import io

# Diff2Lip
DIFF2LIP_MODEL = io.Custom("DIFF2LIP_MODEL")
FACE_DETECTOR = io.Custom("DIFF2LIP_FACE_DETECTOR")
DIFF2LIP_CROPS = io.Custom("DIFF2LIP_CROPS")

# GAGAvatar
GAGAVATAR_MODEL = io.Custom("GAGAVATAR_MODEL")
FLAME_MODEL = io.Custom("FLAME_MODEL")
GAGAVATAR_SOURCE = io.Custom("GAGAVATAR_SOURCE")
GAGAVATAR_AVATAR = io.Custom("GAGAVATAR_AVATAR")
GAGAVATAR_DRIVER = io.Custom("GAGAVATAR_DRIVER")
GAGAVATAR_TRACKER = io.Custom("GAGAVATAR_TRACKER")

# Streams (pipelines/stream): a re-playable description of frames (source + stages), iterated chunk by chunk
FRAME_STREAM = io.Custom("TALKINGHEAD_FRAME_STREAM")
