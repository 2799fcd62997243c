"""GAGAvatar orchestration (framework-free): camera geometry, tracked-driver I/O and the animation loop.

- :mod:`.geometry`: ``plane_points``, ``harmonic_embedding``, ``camera_matrices``, ``camera_tanfov``
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
from .driver import LmdbFrames, TrackedDriver, as_driver, read_tracked, write_tracked
from .geometry import camera_matrices, camera_tanfov, harmonic_embedding, plane_points

__all__ = [
    "LmdbFrames", "TrackedDriver", "animate", "as_driver", "camera_matrices", "camera_tanfov", "clear_source_cache",
    "driver_points", "encode_source_cached", "harmonic_embedding", "plane_points", "prepare_source_image",
    "preview_from_splats", "read_tracked", "refine_splats", "render_splat", "splat_frames", "write_tracked",
]
