"""The repository stands alone: no tracked file points a reader at a document or folder outside it.

Comments, docstrings, docs and the weights manifest state their reasons in place (or link a file inside the
repository); a citation of a section or numbered pitfall of a document that is not shipped cannot be followed by
anyone with only a clone.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Built from pieces so that this file does not match its own patterns.
_SECTION = "\u00a7"
_OUTSIDE_DOCS = ("diff2lip", "gagavatar", "deps", "offline-models", "comfyui", "peers")
FORBIDDEN = re.compile("|".join([
    _SECTION,                                              # section signs of external design documents
    r"\btr" + r"ap \d",                                    # numbered pitfalls of an external document
    r"\bseed (?:ph" + r"ase|pl" + r"an)\b",                # the plan the pack was started from
    r"\.\./sha" + r"red",                                  # a folder beside the clone
    r"\bsha" + r"red docs\b",
    r"TALKINGHEAD_SHA" + r"RED",
    r"\(iss" + r"ue:",                                      # the tracker of the project's work items
    r"\bthe pl" + r"an's\b",
    r"(?<![\w-])(?P<doc>(?:[\w.-]+/)*(?:" + "|".join(re.escape(n) for n in _OUTSIDE_DOCS) + r")\.md)\b",
]), re.IGNORECASE)


def _outside(match: re.Match) -> bool:
    """A document named by path is fine when that path is a file of the repository (a design note in docs/)."""
    doc = match.group("doc")
    return not (doc and "/" in doc and (REPO / doc).is_file())


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
        names = [n for n in out.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):  # an unpacked archive without .git: walk the tree instead
        names = []
        for root, dirs, files in os.walk(REPO):
            dirs[:] = [d for d in dirs if d not in {".git", ".venv", "__pycache__", "node_modules"}]
            names += [os.path.relpath(os.path.join(root, f), REPO) for f in files]
    return [REPO / n for n in names if (REPO / n).is_file()]


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def test_no_reference_to_documents_outside_the_repository():
    hits = []
    for path in _tracked_files():
        text = _text(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if any(_outside(match) for match in FORBIDDEN.finditer(line)):
                hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:120]}")
    assert not hits, ("state the reason in place or link a file inside the repository instead of:\n"
                      + "\n".join(hits))


def test_the_pattern_catches_each_kind_of_outside_reference():
    # guards the guard: each kind of citation the scrub removed must still be recognised
    gagavatar, diff2lip, offline = (name + ".md" for name in ("gagavatar", "diff2lip", "offline-models"))
    samples = ["see " + gagavatar + " " + _SECTION + "6.1", "(tr" + "ap 17)", "seed ph" + "ase 2.2",
               "put ../sha" + "red beside the repo", offline + " 1.4", "(" + diff2lip.upper() + " section 5)",
               "docs/" + gagavatar]
    for sample in samples:
        assert any(_outside(match) for match in FORBIDDEN.finditer(sample)), sample
    for fine in ["shared by all frames", "trapezoid", "seed 7", "docs/diff2lip", "README.md", "tests/fixtures/README.md"]:
        assert not FORBIDDEN.search(fine), fine


def test_pyproject_has_no_empty_placeholders():
    """Unknown publishing fields are left out (README "Publishing"), never shipped empty."""
    import tomllib

    def empty_values(node, path=""):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from empty_values(value, f"{path}.{key}" if path else key)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from empty_values(value, f"{path}[{index}]")
        elif isinstance(node, str) and not node.strip():
            yield path

    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert list(empty_values(data)) == []
    assert data["project"]["name"] and data["project"]["version"]
