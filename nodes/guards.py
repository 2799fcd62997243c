"""Node-side guards: the ComfyUI folders a node may read and write, and checks of IMAGE / AUDIO / LATENT / fps inputs.

The rules themselves live in ``pipelines.validation`` (framework-free); this module only supplies ComfyUI's folders.
A ComfyUI server may be shared on a LAN, so a prompt must not be able to read, write or probe files outside them.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import folder_paths

from ..pipelines.validation import (check_audio, check_finite, check_fps, existing_roots, file_signature,
                                    is_inside, output_folder_inside, resolve_inside)

# Extra folders (besides the input folder) that Load Tracked Driver / Source may read: the "gagavatar_tracked" entry
# of ComfyUI's extra_model_paths.yaml (see README, Security).
TRACKED_FOLDER_NAME = "gagavatar_tracked"
TRACKED_FILES = ("smoothed.pkl", "optim.pkl", "img_lmdb", "meta.json")

__all__ = ["check_audio", "check_finite", "check_fps", "checked_latent", "file_signature", "input_file",
           "node_errors", "output_folder", "tracked_folder", "TRACKED_FOLDER_NAME"]


def _annotated(name: str) -> tuple[str, str]:
    """ComfyUI's ``name [input]`` / ``[output]`` / ``[temp]`` annotations -> (name, base folder); input by default."""
    plain, base = folder_paths.annotated_filepath(str(name))
    return plain, base or folder_paths.get_input_directory()


def input_file(name: str, node: str, input_name: str) -> Path:
    """A regular file in ComfyUI's input folder (or the output/temp folder its annotation names), symlinks followed
    and checked to stay inside; one message for missing, outside and not-a-file."""
    plain, base = _annotated(name)
    return resolve_inside([base], plain, node, input_name, kind="file")


def tracked_roots() -> list[str]:
    extra = folder_paths.folder_names_and_paths.get(TRACKED_FOLDER_NAME, ([], set()))[0]
    return existing_roots([folder_paths.get_input_directory(), *extra])


def tracked_folder(path: str, node: str, input_name: str) -> Path:
    """A tracked driver/source folder (or its pickle) inside the input folder or a configured tracked folder, with
    its pickle, LMDB and meta.json inside them too (a symlink inside the folder cannot point elsewhere)."""
    roots = tracked_roots()
    found = resolve_inside(roots, path, node, input_name, kind="any")
    folder = found if found.is_dir() else found.parent
    for name in TRACKED_FILES:
        part = folder / name
        if os.path.lexists(part) and not any(is_inside(root, part) for root in roots):
            raise FileNotFoundError(f"{node}: input '{input_name}' = '{path}': {name} in that folder points outside "
                                    f"{' or '.join(roots)}; copy the real files there instead of linking them.")
    return found


def output_folder(name: str, node: str, input_name: str) -> Path:
    """A folder strictly inside ComfyUI's output folder (never the output folder itself or a sibling of it)."""
    return output_folder_inside(folder_paths.get_output_directory(), name, node, input_name)


def checked_latent(latent, node: str, input_name: str):
    """The ``samples`` tensor of a LATENT, checked finite."""
    if not isinstance(latent, dict) or "samples" not in latent:
        raise ValueError(f"{node}: input '{input_name}' is not a LATENT ({{'samples': tensor}}).")
    check_finite(latent["samples"], node, input_name)
    return latent["samples"]


@contextlib.contextmanager
def node_errors(node: str):
    """Prefix ``ValueError`` / ``FileNotFoundError`` messages raised inside with the node's name (once)."""
    try:
        yield
    except (ValueError, FileNotFoundError) as error:
        text = str(error)
        if text.startswith(node):
            raise
        kind = FileNotFoundError if isinstance(error, FileNotFoundError) else ValueError
        raise kind(f"{node}: {text}") from error
