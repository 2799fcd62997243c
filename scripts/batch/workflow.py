"""Point an API workflow at one sub-clip and replace its Save Video by the lossless sink of the chunk's own frames."""
from __future__ import annotations

import copy

VIDEO_LOADERS = {"LoadVideo": "file"}
AUDIO_LOADERS = {"TalkingHeadLoadAudio": "audio", "LoadAudio": "audio"}
SINK = "TalkingHeadSaveFramesLossless"


def _nodes(prompt: dict, classes) -> list[str]:
    return [nid for nid, node in prompt.items() if node["class_type"] in classes]


def check_batchable(prompt: dict) -> None:
    """Refuse workflows the batch runner cannot feed or read, saying what it needs."""
    videos, saves = _nodes(prompt, VIDEO_LOADERS), _nodes(prompt, {"SaveVideo"})
    if len(videos) != 1:
        raise SystemExit(f"batch: the workflow needs exactly one Load Video node (core LoadVideo) to feed each clip "
                         f"into; it has {len(videos)}")
    if len(saves) != 1:
        raise SystemExit(f"batch: the workflow needs exactly one Save Video node to take the result from; it has "
                         f"{len(saves)}")
    link = prompt[saves[0]]["inputs"].get("video")
    if not (isinstance(link, list) and prompt[link[0]]["class_type"] == "CreateVideo"):
        raise SystemExit("batch: Save Video must take its video from a Create Video node (frames + fps + audio)")


def needs_audio(prompt: dict) -> bool:
    return bool(_nodes(prompt, AUDIO_LOADERS))


def chunk_prompt(prompt: dict, video_name: str, audio_name: str | None, keep_start: int, keep_count: int,
                 prefix: str) -> dict:
    """A copy of ``prompt`` that loads ``video_name`` (and ``audio_name`` in every audio loader) and writes frames
    ``[keep_start, keep_start + keep_count)`` of what Save Video would have saved, losslessly, under ``prefix``."""
    check_batchable(prompt)
    out = copy.deepcopy(prompt)
    for nid in _nodes(out, VIDEO_LOADERS):
        out[nid]["inputs"][VIDEO_LOADERS[out[nid]["class_type"]]] = video_name
    for nid in _nodes(out, AUDIO_LOADERS):
        out[nid]["inputs"][AUDIO_LOADERS[out[nid]["class_type"]]] = audio_name
    save = _nodes(out, {"SaveVideo"})[0]
    create = out[out[save]["inputs"]["video"][0]]["inputs"]
    out[save] = {"class_type": SINK, "_meta": {"title": "Batch chunk"},
                 "inputs": {"images": create["images"], "fps": create.get("fps", 25.0), "filename_prefix": prefix,
                            "keep_start": int(keep_start), "keep_count": int(keep_count)}}
    return out
