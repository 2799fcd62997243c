"""GAGAvatar tracking nodes: plain portrait / driving video (IMAGE) -> tracked source / driver, via
``pipelines.tracking`` (a re-implementation of the official tracker's inference path)."""
from __future__ import annotations

import os

import folder_paths
import torch
from comfy_api.latest import io

from . import help_text
from .common import ModelCache, image_to_numpy, log, numpy_to_image, progress_callback, torch_device
from .guards import check_finite, check_fps, node_errors, output_folder
from .help_text import schema
from .sockets import FLAME_MODEL, GAGAVATAR_DRIVER, GAGAVATAR_SOURCE, GAGAVATAR_TRACKER

CATEGORY = "TalkingHead/GAGAvatar/tracking"
MATTING = {"StyleMatte (released, as the reference)": "stylematte",
           "MediaPipe selfie segmentation (built-in fallback)": "selfie", "none": "none"}
FACE_BOX = {"S3FD + FAN (as the reference)": "fan", "BlazeFace (built-in fallback)": "blazeface"}
_trackers = ModelCache(capacity=1)


def _first_folder(name: str) -> str:
    paths = folder_paths.get_folder_paths(name)
    return next((p for p in paths if os.path.isdir(p)), paths[0])


class GAGAvatarTrackerLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            search_aliases=help_text.TRACKING_ALIASES,
            node_id="GAGAvatarTrackerLoader",
            display_name="Tracker Loader (GAGAvatar)",
            category=CATEGORY,
            description="Loads the official GAGAvatar tracker's files from models/gagavatar/track (VGGHead, "
                        "landmarks, EMICA, SCRFD, StyleMatte; CC BY-NC 4.0) and FLAME. A missing file is named with "
                        "where it goes.",
            inputs=[
                io.Combo.Input("matting", options=list(MATTING), default=next(iter(MATTING)),
                               tooltip="How the crop is matted onto black. The fallbacks are not the reference's "
                                       "matte and change the avatar slightly."),
                io.Combo.Input("face_box", options=list(FACE_BOX), default=next(iter(FACE_BOX)),
                               tooltip="What places EMICA's face crops: S3FD + 2DFAN4 files in "
                                       "models/face_detection (reference), or the built-in BlazeFace."),
                FLAME_MODEL.Input("flame", optional=True,
                                  tooltip="FLAME with the 70-point landmark embedding (FLAME_with_eye.pt); default "
                                          "models/flame/FLAME_with_eye.pt."),
            ],
            outputs=[GAGAVATAR_TRACKER.Output(display_name="tracker")],
        )

    @classmethod
    def execute(cls, matting, face_box, flame=None):
        from ..pipelines.tracking import load_tracker

        folder = _first_folder("gagavatar_track")
        device = torch_device()
        key_file = os.path.join(folder, "vgg_heads_l.trcd")

        def load():
            return load_tracker(folder, device=device, flame=None if flame is None else flame.module,
                                face_detection_folder=_first_folder("face_detection"), matting=MATTING[matting],
                                face_box=FACE_BOX[face_box])

        with node_errors("Tracker Loader (GAGAvatar)"):
            if not os.path.isfile(key_file):
                return io.NodeOutput(load())  # raises FileNotFoundError naming every missing file and where it goes
            tracker = _trackers.get(key_file, device, torch.float32, load,
                                    extra=(matting, face_box, id(flame.module) if flame else None))
        return io.NodeOutput(tracker)


class GAGAvatarTrackPortrait(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            search_aliases=help_text.TRACKING_ALIASES,
            node_id="GAGAvatarTrackPortrait",
            display_name="Track Portrait (GAGAvatar)",
            category=CATEGORY,
            description="Any portrait photo -> the avatar source: head crop (512², matted), FLAME shape and camera.",
            inputs=[GAGAVATAR_TRACKER.Input("tracker"),
                    io.Image.Input("image", tooltip="The portrait; the first image of a batch is used."),
                    io.Int.Input("steps", default=300, min=1, max=5000,
                                 tooltip="Optimisation steps of the camera/eye fit (the reference uses 300).")],
            outputs=[GAGAVATAR_SOURCE.Output(display_name="source"), io.Image.Output(display_name="source_crop")],
        )

    @classmethod
    def execute(cls, tracker, image, steps):
        from ..pipelines.gagavatar.source import source_from_tracked
        from ..pipelines.tracking import track_image

        check_finite(image[:1], "Track Portrait (GAGAvatar)", "image")
        tracked = track_image(image_to_numpy(image[:1])[0], tracker, steps=steps, progress=progress_callback(steps))
        source = source_from_tracked(tracked, 0)
        return io.NodeOutput(source, numpy_to_image(source.image[None]))


class GAGAvatarTrackVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return schema(
            search_aliases=help_text.TRACKING_ALIASES,
            node_id="GAGAvatarTrackVideo",
            display_name="Track Driving Video (GAGAvatar)",
            category=CATEGORY,
            description="Driving video frames -> a driver (FLAME expression/jaw/eyes + camera per frame). Frames "
                        "without a head are interpolated from their neighbours and reported, never aborted.",
            inputs=[GAGAVATAR_TRACKER.Input("tracker"), io.Image.Input("frames"),
                    io.Float.Input("fps", default=25.0, min=1.0, max=240.0, step=0.001,
                                   tooltip=help_text.fps(note="E.g. from Get Video Components.")),
                    io.Boolean.Input("drop_high_fps", default=False,
                                     tooltip="Keep every other frame above 50 fps, as the official tracker always "
                                             "does (reported)."),
                    io.Int.Input("steps", default=300, min=1, max=5000, tooltip="Fit steps per frame (reference 300)."),
                    io.Int.Input("batch_size", default=16, min=1, max=256,
                                 tooltip=help_text.batch_size("Frames fitted"))],
            outputs=[GAGAVATAR_DRIVER.Output(display_name="driver"), io.Image.Output(display_name="crops"),
                     io.Float.Output(display_name="fps"), io.String.Output(display_name="report")],
        )

    @classmethod
    def execute(cls, tracker, frames, fps, drop_high_fps, steps, batch_size):
        import json

        from ..pipelines.tracking import track_video

        node = "Track Driving Video (GAGAvatar)"
        fps = check_fps(fps, node)
        check_finite(frames, node, "frames")
        driver, report = track_video(image_to_numpy(frames), fps, tracker, progress=progress_callback(len(frames)),
                                     drop_high_fps=drop_high_fps, steps=steps, batch_size=batch_size)
        text = json.dumps(report, default=str)
        if report.get("interpolated_frames") or report.get("dropped_input_frames"):
            log.warning("Track Driving Video (GAGAvatar): %s", text)
        return io.NodeOutput(driver, numpy_to_image(driver.load_images()), float(driver.fps), text,
                             ui={"text": [text]})


class GAGAvatarSaveTracked(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="GAGAvatarSaveTracked",
            display_name="Save Tracked (GAGAvatar)",
            category=CATEGORY,
            description="Saves a tracked driver in the official layout (smoothed.pkl / optim.pkl + img_lmdb/) in the "
                        "output folder, under a new name; reload it with Load Tracked Driver / Source.",
            inputs=[GAGAVATAR_DRIVER.Input("driver"),
                    io.String.Input("folder_name", default="tracked/driver",
                                    tooltip="Folder under ComfyUI's output folder; a number is appended if it exists.")],
            outputs=[io.String.Output(display_name="path")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, driver, folder_name):
        from ..pipelines.gagavatar import write_tracked
        from ..pipelines.media import free_path

        target = output_folder(folder_name, "Save Tracked (GAGAvatar)", "folder_name")
        path = str(write_tracked(free_path(target), driver))
        return io.NodeOutput(path, ui={"text": [path]})


NODES = [GAGAvatarTrackerLoader, GAGAvatarTrackPortrait, GAGAvatarTrackVideo, GAGAvatarSaveTracked]
