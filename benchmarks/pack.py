"""The one way a benchmark imports the pack: ``from pack import load_pack`` (benchmarks run as scripts,
``python benchmarks/<name>.py``, so this folder is on ``sys.path``)."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_pack():
    """Register the repository as the package ``talkinghead`` exactly as the tests do (its modules use relative
    imports and the folder name is the user's), and put tests/ on ``sys.path`` for the test-media helpers the
    benchmarks share with the tests (``media``, ``gagavatar_synth``, ``diff2lip_enhance_media``)."""
    for folder in ("tests", "scripts"):
        if str(REPO / folder) not in sys.path:
            sys.path.insert(0, str(REPO / folder))
    from import_pack import import_pack

    return import_pack()
