#!/usr/bin/env python3
"""Command line of the pack: ``talkinghead.py weights ...`` and ``talkinghead.py run WORKFLOW ...``.

The repository is a ComfyUI custom-node package whose folder name users choose, so this launcher imports it under
the fixed name ``talkinghead`` (the same way the tests do) instead of relying on ``python -m <folder>``.
"""
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def import_pack(name: str = "talkinghead"):
    spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    import_pack()
    commands = {"run": "talkinghead.scripts.runner", "weights": "talkinghead.weights.fetch",
                "build-workflows": "talkinghead.scripts.build_workflows"}
    if not argv or argv[0] not in commands:
        print("usage: talkinghead.py {run,weights} ...\n"
              "  run WORKFLOW [--set NODE.INPUT=VALUE] ...  run a bundled workflow through ComfyUI\n"
              "  weights {list,fetch,verify} ...            list / download / check model files", file=sys.stderr)
        return 2
    module = importlib.import_module(commands[argv[0]])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
