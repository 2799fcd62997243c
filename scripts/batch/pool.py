"""Where chunk tasks run: one worker in this process (the default), or Ray actors, one per GPU (or CPU)."""
from __future__ import annotations

import os
import shutil
import socket
from collections import deque
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1]


class WorkerLost(RuntimeError):
    """The worker process died (killed, out of memory) while it ran a task; the task is run again elsewhere."""


class LocalPool:
    """Tasks one after another in one embedded ComfyUI (started on first use), or in ``server`` when given."""

    def __init__(self, models_dir: str | None = None, cpu: bool = True, server=None):
        self.models_dir, self.cpu, self.server = models_dir, cpu, server
        self.worker = None
        self.queue: deque = deque()
        self.size = 1

    def idle(self) -> int:
        return 0 if self.queue else 1

    def busy(self) -> bool:
        return bool(self.queue)

    def submit(self, key, task: dict) -> None:
        self.queue.append((key, task))

    def wait(self):
        """Run the queued task: ``(key, result, None)`` or ``(key, None, error)``."""
        key, task = self.queue.popleft()
        if self.worker is None:
            from .worker import ChunkWorker

            self.worker = ChunkWorker(self.models_dir, cpu=self.cpu, name="local", server=self.server)
        try:
            return key, self.worker.run(task), None
        except Exception as e:  # noqa: BLE001 - reported per task; the batch goes on
            return key, None, e

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()


class RayPool:
    """``address``: ``local:N`` starts a local Ray with N workers; ``auto`` or ``HOST:PORT`` joins a cluster and uses
    one worker per GPU (or per CPU where it has none).  A dead worker is replaced (up to a limit)."""

    def __init__(self, address: str, models_dir: str | None, workers: int = 0, cpu: bool = True):
        try:
            import ray
        except ImportError:
            raise SystemExit("--ray needs Ray: pip install 'ray>=2.60' (or run without --ray: one worker, here)") \
                from None
        self.ray = ray
        self.started_ray = not ray.is_initialized()
        # Workers import the pack through scripts/ (the pack must be at the same path on every node).
        env = {"PYTHONPATH": os.pathsep.join(p for p in (str(SCRIPTS), os.environ.get("PYTHONPATH")) if p)}
        if self.started_ray:
            kwargs = dict(include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env},
                          logging_level="WARNING")
            if address.startswith("local:"):
                workers = workers or int(address.split(":", 1)[1])
                ray.init(num_cpus=workers, object_store_memory=256 * 1024 * 1024, **kwargs)
            else:
                ray.init(address=address, **kwargs)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        self.size = workers or gpus or max(1, int(resources.get("CPU", 1)))
        self.options = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        self.options.update(max_concurrency=2)  # a pid() query answers while a task runs
        self.models_dir, self.cpu = models_dir, cpu and not gpus
        self.replacements_left = 2 * self.size
        self.workdirs: dict = {}  # actor -> future (host, folder of its ComfyUI)
        self.actors = [self._new_actor() for _ in range(self.size)]
        self.pids = dict(zip(self.actors, ray.get([a.pid.remote() for a in self.actors])))
        self.idle_actors = list(self.actors)
        self.in_flight: dict = {}

    def _new_actor(self):
        import batch_worker  # scripts/batch_worker.py: importable on every worker through PYTHONPATH

        actor = self.ray.remote(batch_worker.RayChunkWorker).options(**self.options).remote(self.models_dir, self.cpu)
        self.workdirs[actor] = actor.workdir.remote()
        return actor

    def _remove_workdir(self, actor) -> None:
        """A killed worker cannot clean up its copy of ComfyUI; remove it when it lies on this machine."""
        try:
            host, folder = self.ray.get(self.workdirs.pop(actor), timeout=5)
        except Exception:  # noqa: BLE001 - it died before it had a folder
            return
        if folder and host == socket.gethostname():
            shutil.rmtree(folder, ignore_errors=True)

    def idle(self) -> int:
        return len(self.idle_actors)

    def busy(self) -> bool:
        return bool(self.in_flight)

    def submit(self, key, task: dict) -> None:
        actor = self.idle_actors.pop(0)
        self.in_flight[actor.run.remote(task)] = (key, actor)

    def wait(self):
        ray = self.ray
        [ref], _ = ray.wait(list(self.in_flight), num_returns=1)
        key, actor = self.in_flight.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayActorError as e:
            self.actors.remove(actor)
            self._remove_workdir(actor)
            if self.replacements_left > 0:
                self.replacements_left -= 1
                replacement = self._new_actor()
                self.actors.append(replacement)
                self.idle_actors.append(replacement)
            if not self.actors:
                raise RuntimeError(f"every Ray worker died; the last error: {e}") from None
            return key, None, WorkerLost(str(e).splitlines()[0] if str(e) else "worker died")
        except ray.exceptions.RayTaskError as e:
            self.idle_actors.append(actor)
            return key, None, e.cause if isinstance(e.cause, Exception) else e
        self.idle_actors.append(actor)
        return key, result, None

    def close(self) -> None:
        try:
            self.ray.get([actor.close.remote() for actor in self.actors], timeout=60)
        except Exception:  # noqa: BLE001 - best effort: a killed server also dies with its worker
            pass
        for actor in self.actors:
            self.ray.kill(actor)
        if self.started_ray:
            self.ray.shutdown()
