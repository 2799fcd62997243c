"""Help text written once: tooltips of the inputs several nodes share, and the words users search nodes by.

A shared input gets its tooltip from here so one wording serves every node; a node-specific detail is passed as
``note``.  :func:`schema` adds ``search_aliases`` only where the running ComfyUI's ``io.Schema`` has that field:
ComfyUI 0.3.75 (the one the tests run) has none, and an unknown field would stop the node from loading.
"""
from __future__ import annotations

import inspect

from comfy_api.latest import io

FRAMES = "Video frames (IMAGE batch)."
SPEECH = "Speech to sync to: any sample rate and channel count."
CLOSE_MOUTH_IN_SILENCE = ("Where a voice-activity detector (silero-vad) hears no speech, keep the original mouth "
                          "instead of generating one from noise.")
CROP_UPSCALER = ("Super-resolution for generated crops smaller than their face box, before they are resized into it "
                 "(e.g. RealESRGAN_x2plus via Load Upscale Model).")
REFERENCE_NOISE = "Fresh random refiner noise per frame, as the official code (shimmers)."
RENDERED_SOURCE = "The identity rendered (eye positions follow its shape)."


def fps(of: str = "the frames", note: str = "") -> str:
    """The frame-rate tooltip: whose rate it is, and what it is used for."""
    return f"Frame rate of {of}.{' ' + note if note else ''}"


def batch_size(unit: str, note: str = "") -> str:
    """The one wording of every ``batch_size`` input: what one call takes, and the speed/memory trade-off."""
    return f"{unit} per call: larger is faster where memory allows.{' ' + note if note else ''}"


# What users type in the node search besides the node's own name.
LIP_SYNC_ALIASES = ["lipsync", "lip sync", "wav2lip", "dubbing", "talking head", "mouth sync", "audio to video"]
AVATAR_ALIASES = ["avatar", "talking head", "head avatar", "portrait animation", "reenactment", "gaussian splatting",
                  "3dgs"]
TRACKING_ALIASES = ["face tracking", "flame", "3dmm", "head pose", "expression capture"]

SCHEMA_HAS_SEARCH_ALIASES = "search_aliases" in inspect.signature(io.Schema).parameters


def schema(search_aliases: list[str] | None = None, **fields) -> io.Schema:
    """``io.Schema(**fields)``, with ``search_aliases`` where this ComfyUI supports them (ignored otherwise)."""
    if search_aliases and SCHEMA_HAS_SEARCH_ALIASES:
        fields["search_aliases"] = list(search_aliases)
    return io.Schema(**fields)
