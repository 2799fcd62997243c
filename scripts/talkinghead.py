#!/usr/bin/env python3
"""Command line of the pack: ``talkinghead.py weights ...``, ``run WORKFLOW ...`` and ``flame convert ...``.

The repository is a ComfyUI custom-node package whose folder name users choose, so this launcher imports it under
the fixed name ``talkinghead`` (the same way the tests do) instead of relying on ``python -m <folder>``.
"""
import importlib
import sys

from import_pack import import_pack  # this folder is on sys.path when the script runs


def main(argv: list[str]) -> int:
    import_pack()
    commands = {"run": "talkinghead.scripts.runner", "batch": "talkinghead.scripts.batch.run",
                "weights": "talkinghead.weights.fetch", "build-workflows": "talkinghead.scripts.build_workflows",
                "flame": "talkinghead.scripts.flame_cli"}
    if not argv or argv[0] not in commands:
        print("usage: talkinghead.py {run,batch,weights,flame,build-workflows} ...\n"
              "  run WORKFLOW [--set NODE.INPUT=VALUE] ...  run a bundled workflow through ComfyUI\n"
              "  batch WORKFLOW --inputs ... --output-dir D  run it over many clips (chunked, resumable, Ray)\n"
              "  weights {list,fetch,verify} ...            list / download / check model files\n"
              "  flame convert generic_model.pkl [...]      FLAME 2020 pickle -> models/flame/FLAME_with_eye.pt\n"
              "  build-workflows [--url URL]                regenerate workflows/ from scripts/build_workflows.py",
              file=sys.stderr)
        return 2
    module = importlib.import_module(commands[argv[0]])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
