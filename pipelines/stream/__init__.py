"""Re-playable frame streams: video in, stages, video out, in bounded memory (see core.py for the design)."""
from .core import ArraySource, FrameItem, FrameStream, PerFrameRun, Source, Stage, StageRun, StreamInfo, not_signed
from .video import CODECS, VideoError, VideoSource, encode_stream, probe_video

__all__ = ["ArraySource", "CODECS", "FrameItem", "FrameStream", "PerFrameRun", "Source", "Stage", "StageRun",
           "StreamInfo", "VideoError", "VideoSource", "encode_stream", "not_signed", "probe_video"]
