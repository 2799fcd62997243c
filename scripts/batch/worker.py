"""One headless ComfyUI that runs chunk tasks: started once, reused, so models load once per worker."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ..comfy_client import ComfyServer
from .workflow import chunk_prompt

REPO = Path(__file__).resolve().parents[2]


def _die_with_parent() -> None:
    """In the ComfyUI child: get SIGTERM when the worker process dies (killed workers leave no server behind)."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ChunkWorker:
    """Runs ``task`` dicts (see :func:`make_task`) in its ComfyUI; ``server`` reuses an already running one."""

    def __init__(self, models_dir: str | None = None, cpu: bool = True, name: str = "", server=None):
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.models_dir, self.cpu = models_dir, cpu
        self._own_dir = None
        self.server = server if server is not None else self._start_server()

    def _start_server(self) -> ComfyServer:
        self._own_dir = tempfile.mkdtemp(prefix="talkinghead-batch-")
        server = ComfyServer(Path(self._own_dir), REPO, models_dir=Path(self.models_dir) if self.models_dir else None,
                             cpu=self.cpu)
        if sys.platform.startswith("linux"):
            server.popen_kwargs = {"preexec_fn": _die_with_parent}
        server.prepare()
        server.start()
        return server

    def pid(self) -> int:
        return os.getpid()

    def workdir(self) -> tuple[str, str | None]:
        """(host, the folder of this worker's own ComfyUI): a pool removes it when the worker is killed."""
        return socket.gethostname(), self._own_dir

    def run(self, task: dict) -> dict:
        """Run one chunk: returns ``{"data": lossless chunk bytes, "reports": [...], "worker", "seconds"}``."""
        started = time.perf_counter()
        if self._own_dir is not None and self.server.proc.poll() is not None:  # our ComfyUI died (e.g. out of memory)
            self.close()
            self.server = self._start_server()
        tag = uuid.uuid4().hex[:12]
        names = {}
        try:
            for key in ("video", "audio"):
                if task.get(key):
                    name, data = task[key]
                    names[key] = f"batch_{tag}_{name}"
                    (self.server.input / names[key]).write_bytes(data)
            prompt = chunk_prompt(task["prompt"], names["video"], names.get("audio"), task["keep_start"],
                                  task["keep_count"], f"batch_{tag}/chunk", float(task.get("fps", 25.0)))
            result = self.server.run(prompt, timeout=task.get("timeout", 6 * 3600))
            last = result["messages"][-1]
            if last["type"] != "execution_success":
                data = last.get("data", {})
                raise RuntimeError(f"node {data.get('node_id')} ({data.get('node_type')}) failed: "
                                   f"{data.get('exception_message', last['type'])}".strip())
            outputs = result["history"].get("outputs", {})
            sink = [nid for nid, node in prompt.items() if node["class_type"] == "TalkingHeadSaveFramesLossless"][0]
            saved = outputs[sink]["images"][0]
            path = self.server.output / saved["subfolder"] / saved["filename"]
            return {"data": path.read_bytes(), "reports": _reports(outputs), "worker": self.name,
                    "seconds": time.perf_counter() - started}
        finally:
            for name in names.values():
                (self.server.input / name).unlink(missing_ok=True)
            shutil.rmtree(self.server.output / f"batch_{tag}", ignore_errors=True)

    def close(self) -> None:
        if self._own_dir is not None:
            self.server.stop()
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None


def _reports(outputs: dict) -> list[dict]:
    """The JSON reports output nodes showed as text (Diff2Lip Lip Sync's frames / faces found / passed through)."""
    reports = []
    for node_out in outputs.values():
        for text in node_out.get("text", []) if isinstance(node_out, dict) else []:
            try:
                value = json.loads(text)
            except (TypeError, ValueError):
                continue
            if isinstance(value, dict):
                reports.append(value)
    return reports
