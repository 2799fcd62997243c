"""The pack's layering, read from the source with ``ast`` (nothing is imported, so it runs without ComfyUI).

nodes/ adapts ComfyUI sockets to pipelines/; pipelines/ is framework-free orchestration; models/ holds the networks
and what they need (camera geometry included) and imports nothing above it.  Every arrow must point down.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACK_DIRS = ("models", "pipelines", "nodes", "weights", "scripts")
# top-level modules a ComfyUI install provides (``nodes`` too: ComfyUI's own, reached by an absolute import)
COMFY_MODULES = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "comfy_config", "folder_paths", "server",
                 "node_helpers", "latent_preview", "execution", "nodes"}
MAX_NODE_FILE_LINES = 400
# The two products' packages under pipelines/.  Everything else there (frames, optical_flow, face_detection,
# face_landmarks, media, ...) is shared: both products import it and it imports neither.
# Each product's streamed stages (pipelines/stream/<product>.py) belong to that product; the stream core and the
# video source/sink (pipelines/stream/core.py, video.py) are shared and must not import either product.
PRODUCTS = {
    "Diff2Lip": ("pipelines.diff2lip", "pipelines.diff2lip_enhance", "pipelines.audio_enhance",
                 "pipelines.stream.diff2lip"),
    "GAGAvatar": ("pipelines.gagavatar", "pipelines.gagavatar_enhance", "pipelines.tracking",
                  "pipelines.stream.gagavatar"),
}
# A base stage never depends on its product's optional enhancements (hooks inside a sampler live with the base).
BASE_AND_ENHANCEMENTS = (("pipelines.diff2lip", "pipelines.diff2lip_enhance"),
                         ("pipelines.gagavatar", "pipelines.gagavatar_enhance"),
                         ("pipelines.tracking", "pipelines.gagavatar_enhance"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_parts(path: Path) -> list[str]:
    parts = _module_name(path).split(".")
    return parts if path.name == "__init__.py" else parts[:-1]


def pack_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO / folder).rglob("*.py"))


def imports_of(path: Path, source: str | None = None) -> list[tuple[str, bool, int]]:
    """(imported name, is_relative, line) for every import statement in ``path``, lazy ones inside functions too.

    Relative imports are resolved to pack-rooted names; ``from X import y`` yields ``X.y`` (y may be a submodule,
    and the checks match on prefixes, so ``pipelines.gagavatar.plane_points`` counts as ``pipelines.gagavatar``).
    """
    found = []
    source = path.read_text(encoding="utf-8") if source is None else source
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, False, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = []
            if node.level:
                package = _package_parts(path)
                base = package[:len(package) - (node.level - 1)]
            base += node.module.split(".") if node.module else []
            found += [(".".join(base + [alias.name]), bool(node.level), node.lineno) for alias in node.names]
    return found


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def product_of(module: str) -> str | None:
    return next((name for name, packages in PRODUCTS.items() if any(within(module, p) for p in packages)), None)


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(REPO)}:{line}"


def test_the_import_reader_sees_relative_absolute_and_lazy_imports():
    """The checks below are only as good as this reader: a lazy upward import inside a function must be found."""
    source = ("from . import sibling\nfrom ..pipelines.gagavatar import plane_points\nimport comfy.utils\n"
              "def f():\n    from ...pipelines import media\n")
    found = sorted(imports_of(REPO / "models" / "sub" / "probe.py", source), key=lambda item: item[2])
    assert found == [("models.sub.sibling", True, 1), ("models.pipelines.gagavatar.plane_points", True, 2),
                     ("comfy.utils", False, 3), ("pipelines.media", True, 5)]


def _relative_imports(folders: tuple[str, ...]):
    for path in pack_files(*folders):
        for module, relative, line in imports_of(path):
            if relative:
                yield path, module, line


def test_models_import_nothing_above_them():
    upward = [f"{_where(path, line)} imports {module}" for path, module, line in _relative_imports(("models",))
              if module.split(".")[0] != "models"]
    assert not upward, "models/ must not import pipelines/, nodes/ or anything else above it:\n" + "\n".join(upward)


def test_pipelines_do_not_import_nodes():
    upward = [f"{_where(path, line)} imports {module}" for path, module, line in _relative_imports(("pipelines",))
              if module.split(".")[0] in ("nodes", "scripts")]
    assert not upward, "pipelines/ must not import nodes/ or scripts/:\n" + "\n".join(upward)


def test_no_comfyui_import_below_nodes():
    found = [f"{_where(path, line)} imports {module}" for path in pack_files("models", "pipelines", "weights")
             for module, relative, line in imports_of(path)
             if not relative and module.split(".")[0] in COMFY_MODULES]
    assert not found, "only nodes/ may import ComfyUI:\n" + "\n".join(found)


def test_products_meet_only_in_shared_modules():
    crossing = []
    for path, module, line in _relative_imports(("pipelines",)):
        source, target = product_of(_module_name(path)), product_of(module)
        if target is not None and source != target:
            crossing.append(f"{_where(path, line)}: {source or 'shared module'} imports {module} ({target})")
    assert not crossing, ("the products meet only in shared modules under pipelines/ (frames, optical_flow, "
                          "face_detection, face_landmarks, media); move what both need there:\n" + "\n".join(crossing))


def test_base_stages_do_not_import_their_enhancements():
    upward = [f"{_where(path, line)} imports {module}" for path, module, line in _relative_imports(("pipelines",))
              for base, enhancements in BASE_AND_ENHANCEMENTS
              if within(_module_name(path), base) and within(module, enhancements)]
    assert not upward, "a base stage must work without its enhancement package:\n" + "\n".join(upward)


def test_evaluation_code_stays_out_of_the_products():
    """Synthetic data and metrics that only the tests and benchmarks use live in ``evaluation`` modules, which no
    node, pipeline or model imports."""
    found = [f"{_where(path, line)} imports {module}" for path, module, line in
             _relative_imports(("models", "pipelines", "nodes"))
             if ".evaluation" in f".{module}" and not path.name == "evaluation.py"]
    assert not found, "evaluation modules are for tests and benchmarks only:\n" + "\n".join(found)


@pytest.mark.parametrize("path", pack_files("nodes"), ids=lambda p: p.name)
def test_node_files_stay_small(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_NODE_FILE_LINES, (f"{path.relative_to(REPO)} has {lines} lines: split it by concern "
                                          f"(loaders, main stage, enhancement stages) like the other node files")
