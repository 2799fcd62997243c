"""Model folders of the pack, registered with ComfyUI's ``folder_paths`` so ``extra_model_paths.yaml`` works."""
from __future__ import annotations

import os

import folder_paths

# folder_paths name -> folder under models/ (the targets in weights/manifest.json).  Real-ESRGAN files use core's
# own "upscale_models".
MODEL_FOLDERS = {
    "diff2lip": "diff2lip",  # Diff2Lip checkpoint.pt
    "face_detection": "face_detection",  # S3FD s3fd-619a316812.pth, face-alignment 2DFAN4
    "gagavatar": "gagavatar",  # GAGAvatar.pt
    "flame": "flame",  # FLAME_with_eye.pt (registration required; never shipped)
    "gagavatar_track": os.path.join("gagavatar", "track"),  # tracker files (vgghead, matting, EMICA, SCRFD)
    "syncnet": "syncnet",  # syncnet_v2.model (lip-sync scores; never downloaded by the pack)
}


def register_model_folders() -> None:
    for name, sub in MODEL_FOLDERS.items():
        default = os.path.join(folder_paths.models_dir, sub)
        paths, _ = folder_paths.folder_names_and_paths.get(name, ([], set()))
        if default not in paths:
            paths = [default, *paths]
        folder_paths.folder_names_and_paths[name] = (paths, set(folder_paths.supported_pt_extensions) | {".onnx", ".trcd", ".model"})


def model_files(folder: str) -> list[str]:
    return folder_paths.get_filename_list(folder)


def model_file_problem(folder: str, name: str, node: str) -> str | None:
    """None when ``name`` resolves to a file in the model folder, else a message naming the file, the folders searched
    and how to fetch it (used both at validation time and at execution time)."""
    path = folder_paths.get_full_path(folder, name) if name else None
    if path and os.path.isfile(path):
        return None
    searched = ", ".join(folder_paths.get_folder_paths(folder)) or os.path.join(folder_paths.models_dir, folder)
    from ..weights.fetch import missing_message_for_file

    target = MODEL_FOLDERS.get(folder, folder)
    return f"{node}: model file '{name}' not found in {searched}. {missing_message_for_file(name, target)}"


def resolve_model_file(folder: str, name: str, node: str) -> str:
    """Full path of a model file chosen in a COMBO, or a FileNotFoundError that says how to get it."""
    problem = model_file_problem(folder, name, node)
    if problem:
        raise FileNotFoundError(problem)
    return folder_paths.get_full_path(folder, name)
