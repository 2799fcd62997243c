"""The UI-format workflows in ComfyUI's real frontend (1.32.9, served by the test server, in headless Chromium):
loading each one and converting it with the frontend's own ``graphToPrompt`` gives exactly our API-format file —
so the positional widget values, links and node types of the canvas files are right."""
from __future__ import annotations

import json
import shutil

import pytest

from talkinghead.scripts.build_workflows import GRAPHS, WORKFLOWS

pytestmark = pytest.mark.server

CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def page(comfy_server):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it as root)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        tab = browser.new_page()
        tab.goto(comfy_server.url)
        tab.wait_for_function("window.app && window.app.graph", timeout=180_000)
        yield tab
        browser.close()


def _normalised(prompt: dict) -> dict:
    """Node id -> (class, inputs) with links as [str(node id), slot] (the frontend writes ids as strings)."""
    return {nid: (node["class_type"], {k: [str(v[0]), v[1]] if isinstance(v, list) else v
                                      for k, v in node["inputs"].items()})
            for nid, node in prompt.items()}


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_frontend_turns_the_ui_workflow_into_our_api_prompt(page, name):
    ui = json.loads((WORKFLOWS / f"{name}.json").read_text())
    converted = page.evaluate("async (wf) => { await app.loadGraphData(wf); return (await app.graphToPrompt()).output; }",
                              ui)
    api = json.loads((WORKFLOWS / f"{name}_api.json").read_text())
    assert _normalised(converted) == _normalised(api)
