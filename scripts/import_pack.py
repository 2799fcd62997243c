"""Import the pack under a fixed package name, whatever its folder is called.

The pack's modules use relative imports (users rename the folder), so tools outside ComfyUI — the command line, the
tests and the benchmarks — register the repository root as the package ``talkinghead`` the way an outside check
imports it: as a package, without running the ComfyUI entry point.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def import_pack(name: str = "talkinghead"):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
