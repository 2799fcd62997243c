"""GAGAvatar tracker (framework-free): plain portrait / video frames -> FLAME codes + cameras.

- :func:`load_tracker` (``folder`` = ``models/gagavatar/track``) -> :class:`TrackerModels`
- :func:`track_image` -> one-frame :class:`~..gagavatar.TrackedDriver`; :func:`track_video` -> (driver, report)
- building blocks: :mod:`.optimize` (camera/eye fit), :mod:`.camera` (projection, 6D rotations), :mod:`.crops`,
  :mod:`.temporal` (EMA, gap filling, frame selection), :mod:`.landmarks` (98 -> 70 map)
"""
from .optimize import FitResult, FitTargets, fit_camera_and_eyes, vgghead_targets
from .tracker import TrackerModels, analyse_crop, fit_observations, load_tracker, track_image, track_video

__all__ = ["FitResult", "FitTargets", "TrackerModels", "analyse_crop", "fit_camera_and_eyes", "fit_observations",
           "load_tracker", "track_image", "track_video", "vgghead_targets"]
