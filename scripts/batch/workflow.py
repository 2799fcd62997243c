"""Point an API workflow at one sub-clip and replace its Save Video by the lossless sink of the chunk's own frames.

Two graph shapes are understood: core video nodes (Load Video -> Get Video Components ... Create Video -> Save Video)
and the pack's frame streams (Load Video (stream) ... Encode Stream -> Save Video), whose frames are read back as an
IMAGE batch for the sink.
"""
from __future__ import annotations

import copy

VIDEO_LOADERS = {"LoadVideo": "file", "TalkingHeadLoadVideoStream": "video"}
# A stream source reads the whole (already cut) sub-clip: its own frame range is reset.
_WHOLE_RANGE = {"TalkingHeadLoadVideoStream": {"start_frame": 0, "frame_count": 0}}
AUDIO_LOADERS = {"TalkingHeadLoadAudio": "audio", "LoadAudio": "audio"}
SINK = "TalkingHeadSaveFramesLossless"
STREAM_TO_IMAGES = "TalkingHeadStreamToImages"


def _nodes(prompt: dict, classes) -> list[str]:
    return [nid for nid, node in prompt.items() if node["class_type"] in classes]


def _result_source(prompt: dict) -> tuple[str, dict]:
    """The node that makes Save Video's video (Create Video or Encode Stream) and its inputs."""
    save = _nodes(prompt, {"SaveVideo"})[0]
    link = prompt[save]["inputs"].get("video")
    if isinstance(link, list) and prompt.get(link[0], {}).get("class_type") in ("CreateVideo",
                                                                                "TalkingHeadEncodeStream"):
        return prompt[link[0]]["class_type"], prompt[link[0]]["inputs"]
    raise SystemExit("batch: Save Video must take its video from a Create Video node (frames + fps + audio) or an "
                     "Encode Stream node")


def check_batchable(prompt: dict) -> None:
    """Refuse workflows the batch runner cannot feed or read, saying what it needs."""
    videos, saves = _nodes(prompt, VIDEO_LOADERS), _nodes(prompt, {"SaveVideo"})
    if len(videos) != 1:
        raise SystemExit(f"batch: the workflow needs exactly one Load Video node (core LoadVideo or the pack's Load "
                         f"Video (stream)) to feed each clip into; it has {len(videos)}")
    if len(saves) != 1:
        raise SystemExit(f"batch: the workflow needs exactly one Save Video node to take the result from; it has "
                         f"{len(saves)}")
    _result_source(prompt)


def needs_audio(prompt: dict) -> bool:
    return bool(_nodes(prompt, AUDIO_LOADERS))


def chunk_prompt(prompt: dict, video_name: str, audio_name: str | None, keep_start: int, keep_count: int,
                 prefix: str, fps: float = 25.0) -> dict:
    """A copy of ``prompt`` that loads ``video_name`` (and ``audio_name`` in every audio loader) and writes frames
    ``[keep_start, keep_start + keep_count)`` of what Save Video would have saved, losslessly, under ``prefix``.
    ``fps`` only labels the lossless file when the graph has no frame-rate output to link."""
    check_batchable(prompt)
    out = copy.deepcopy(prompt)
    for nid in _nodes(out, VIDEO_LOADERS):
        kind = out[nid]["class_type"]
        out[nid]["inputs"][VIDEO_LOADERS[kind]] = video_name
        out[nid]["inputs"].update(_WHOLE_RANGE.get(kind, {}))
    for nid in _nodes(out, AUDIO_LOADERS):
        out[nid]["inputs"][AUDIO_LOADERS[out[nid]["class_type"]]] = audio_name
    kind, source = _result_source(out)
    if kind == "CreateVideo":
        images, rate = source["images"], source.get("fps", float(fps))
    else:  # a frame stream: decoded back into an IMAGE batch (one chunk's frames) for the sink
        reader = str(max(int(n) for n in out if n.isdigit()) + 1)
        out[reader] = {"class_type": STREAM_TO_IMAGES, "_meta": {"title": "Batch chunk frames"},
                       "inputs": {"stream": source["stream"], "chunk_size": 16}}
        images, rate = [reader, 0], float(fps)
    save = _nodes(out, {"SaveVideo"})[0]
    out[save] = {"class_type": SINK, "_meta": {"title": "Batch chunk"},
                 "inputs": {"images": images, "fps": rate, "filename_prefix": prefix,
                            "keep_start": int(keep_start), "keep_count": int(keep_count)}}
    return out
