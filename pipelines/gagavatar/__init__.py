"""GAGAvatar orchestration (framework-free): camera geometry, tracked-driver I/O and the animation loop.

- camera geometry (``plane_points``, ``harmonic_embedding``, ``camera_matrices``, ``camera_tanfov``), re-exported
  from :mod:`models.camera_geometry` where the network needs it
- :mod:`.driver`: ``read_tracked`` / ``write_tracked`` for the official driver layout, ``TrackedDriver``
- :mod:`.animation`: ``encode_source_cached``, ``animate``, ``splat_frames`` / ``refine_splats``
"""
from .animation import (
    animate,
    clear_source_cache,
    driver_points,
    encode_source_cached,
    prepare_source_image,
    preview_from_splats,
    refine_splats,
    render_splat,
    splat_frames,
)
from ...models.camera_geometry import FOCAL_LENGTH, camera_matrices, camera_tanfov, harmonic_embedding, plane_points
from .driver import LmdbFrames, TrackedDriver, as_driver, read_tracked, write_tracked

__all__ = [
    "FOCAL_LENGTH", "LmdbFrames", "TrackedDriver", "animate", "as_driver", "camera_matrices", "camera_tanfov",
    "clear_source_cache", "driver_points", "encode_source_cached", "harmonic_embedding", "plane_points",
    "prepare_source_image", "preview_from_splats", "read_tracked", "refine_splats", "render_splat", "splat_frames",
    "write_tracked",
]
