"""``talkinghead.py flame convert generic_model.pkl [landmark files...] [--models-dir DIR]``.

Turns the FLAME 2020 ``generic_model.pkl`` (downloaded by the user after registering at flame.is.tue.mpg.de) into
``FLAME_with_eye.pt`` in ComfyUI's ``models/flame`` folder, without chumpy and without running any code from the
pickles (they are read by the numpy-only unpickler; ``.npy`` landmark files by their header).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

OUTPUT_NAME = "FLAME_with_eye.pt"


def convert_command(models_dir=None) -> str:
    """The shell command users are told to run (missing-model messages name it)."""
    from ..weights.fetch import cli_command

    where = f" --models-dir {shlex.quote(str(models_dir))}" if models_dir else ""
    return f"{cli_command()} flame convert /path/to/generic_model.pkl [landmark files...]{where}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="talkinghead.py flame", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert", help=f"generic_model.pkl -> models/flame/{OUTPUT_NAME}")
    convert.add_argument("generic_model", type=Path, help="FLAME 2020 generic_model.pkl")
    convert.add_argument("landmarks", type=Path, nargs="*",
                         help="landmark embeddings to merge: DECA's landmark_embedding.npy, FLAME's "
                              "flame_static_embedding.pkl / flame_dynamic_embedding.npy, or an existing "
                              f"{OUTPUT_NAME} (the only source of the 70-point embedding the tracker needs)")
    convert.add_argument("--models-dir", type=Path, help="ComfyUI's models folder (default: found from the pack's "
                                                        "location <ComfyUI>/custom_nodes/<pack>)")
    convert.add_argument("--force", action="store_true", help=f"replace an existing {OUTPUT_NAME}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """0 written, 1 refused or failed (one line on stderr), 2 bad usage."""
    from ..models.flame import convert_flame_pkl
    from ..weights.fetch import find_models_dir

    args = build_parser().parse_args(argv)
    models_dir = args.models_dir or find_models_dir()
    if models_dir is None:
        print("error: ComfyUI's models folder was not found above the pack; pass --models-dir "
              "/path/to/ComfyUI/models", file=sys.stderr)
        return 2
    for path in (args.generic_model, *args.landmarks):
        if not path.is_file():
            print(f"error: {path} is not a file", file=sys.stderr)
            return 2
    out_path = Path(models_dir) / "flame" / OUTPUT_NAME
    if out_path.exists() and not args.force:
        print(f"error: {out_path} already exists and was left untouched; pass --force to replace it", file=sys.stderr)
        return 1
    try:
        flame = convert_flame_pkl(args.generic_model, out_path, [str(p) for p in args.landmarks])
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    marks = sorted(flame["lmk_embeddings"])
    tracker = "yes" if "full_lmk_faces_idx_with_eye" in marks else "no (animation only; pass FLAME_with_eye.pt's " \
                                                                      "landmarks for tracking)"
    print(f"wrote {out_path} ({flame['flame_model']['v_template'].shape[0]} vertices; landmark embeddings: "
          f"{', '.join(marks) or 'none'}; usable by the tracker: {tracker})")
    return 0
