"""The checks that need a CUDA GPU, in one run (called by benchmarks/gpu_check.sh; < 8 minutes on one GPU).

1. rasteriser parity: gsplat's compositor vs the PyTorch one on the same projection and tile lists (64² fixture and
   the 180k-Gaussian 512²x32 benchmark scene); expected agreement ~1e-2 at worst (gsplat's 0.999 α clamp);
2. Diff2Lip at release size, random weights: fp32 vs default vs bf16/fp16 (differences and speed), and frames per
   second for ddim25 (benchmarks/diff2lip_speed.py);
3. GAGAvatar at 512², random weights: the same comparison (benchmarks/gagavatar_speed.py);
4. the loaders' CUDA path in a real ComfyUI server started without --cpu: the model is registered and loaded on the
   GPU, "unload models" offloads it, the next use loads it back.

Each section prints PASS/FAIL/SKIP and its figures; the last line is a JSON summary.  ``--cpu`` runs the same
sections on the CPU (plumbing check only, much slower for sections 2-3 at full size: use --quick).

    bash benchmarks/gpu_check.sh            # or: .venv/bin/python benchmarks/gpu_check.py [--quick] [--cpu]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "benchmarks"))


def _json_tail(output: str) -> dict:
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON line in:\n{output[-2000:]}")


def check_rasteriser(device: str) -> dict:
    from pack import load_pack

    load_pack()
    from talkinghead.models import gaussian_rasterizer as gr

    if device != "cuda" or not gr._gsplat_importable():
        return {"status": "SKIP", "why": "needs CUDA and an importable gsplat"}
    from gaussian_rasterizer import front_camera, head_like_cloud

    result = {}
    fx = {k: torch.from_numpy(v).cuda() if v.ndim else v for k, v in
          np.load(FIXTURES / "gagavatar" / "gs_raster_64.npz").items()}
    scenes = {"fixture_64": (fx["means"], fx["scales"], fx["quats"], fx["opacities"], fx["colors"],
                             fx["viewmatrix_3dgs"], fx["projmatrix_3dgs"], float(fx["tanfovx"]), float(fx["tanfovy"]),
                             64, fx["background"])}
    means, scales, rotations, opacities, features = (t.cuda() for t in head_like_cloud())
    view, proj, tanfov = front_camera()
    scenes["head_180k_512"] = (means, scales, rotations, opacities, features, view.cuda(), proj.cuda(), tanfov, tanfov,
                               512, torch.zeros(32, device="cuda"))
    worst = 0.0
    for name, (m, s, r, o, f, v, p, tx, ty, size, bg) in scenes.items():
        times = {}
        images = {}
        for backend in ("torch", "gsplat"):
            gr.rasterize(m, s, r, o, f, v, p, tx, ty, size, size, bg, backend=backend)  # warm-up / JIT build
            torch.cuda.synchronize()
            start = time.perf_counter()
            images[backend] = gr.rasterize(m, s, r, o, f, v, p, tx, ty, size, size, bg, backend=backend)
            torch.cuda.synchronize()
            times[backend] = time.perf_counter() - start
        image_diff = (images["torch"][0] - images["gsplat"][0]).abs().max().item()
        alpha_diff = (images["torch"][1] - images["gsplat"][1]).abs().max().item()
        worst = max(worst, image_diff, alpha_diff)
        result[name] = {"image_maxdiff": image_diff, "alpha_maxdiff": alpha_diff,
                        "torch_s": round(times["torch"], 4), "gsplat_s": round(times["gsplat"], 4)}
    result["status"] = "PASS" if worst <= 2e-2 else "FAIL"
    return result


def _run_benchmark(script: str, arguments: list[str], timeout: float) -> dict:
    completed = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *arguments], capture_output=True,
                               text=True, timeout=timeout)
    print(completed.stdout[-3000:], completed.stderr[-2000:] if completed.returncode else "", flush=True)
    if completed.returncode:
        return {"status": "FAIL", "returncode": completed.returncode}
    return {"status": "PASS", **_json_tail(completed.stdout)}


def check_diff2lip(device: str, quick: bool) -> dict:
    steps = ["--steps", "2" if quick else "25", "--frames", "2" if quick else "8", "--rounds", "1"]
    result = _run_benchmark("diff2lip_speed.py", ["--device", device, *steps], timeout=240)
    if result["status"] == "PASS":
        per_frame_ddim25 = result["default_s"] * 25
        result["default_fps_ddim25"] = round(1 / per_frame_ddim25, 3)
        if result["default_maxdiff"] > 1e-3:
            result["status"] = "FAIL"
    return result


def check_gagavatar(device: str, quick: bool) -> dict:
    result = _run_benchmark("gagavatar_speed.py", ["--device", device, "--frames", "1" if quick else "8",
                                                   "--rounds", "1"], timeout=240)
    if result["status"] == "PASS":
        result["default_fps"] = round(1 / result["default_s"], 3)
        if result["default_pixel_maxdiff"] > 2:
            result["status"] = "FAIL"
    return result


def check_loader(device: str) -> dict:
    from comfy_client import ComfyServer

    workdir = Path(tempfile.mkdtemp(prefix="talkinghead-gpu-check-"))
    server = ComfyServer(workdir, REPO, pack_dir_name="ComfyUI-TalkingHead", cpu=device != "cuda")
    try:
        server.prepare()
        (server.models / "diff2lip").mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / "diff2lip" / "tiny_unet.pt", server.models / "diff2lip" / "tiny_unet.pt")
        server.start()
        loader = {"class_type": "Diff2LipModelLoader",
                  "inputs": {"ckpt_name": "tiny_unet.pt", "precision": "fp32", "num_head_channels": 32}}

        def info(node_id: str) -> str:
            prompt = {"1": loader, node_id: {"class_type": "Diff2LipModelInfo", "inputs": {"model": ["1", 0]}}}
            result = server.run(prompt, timeout=300)
            return result["history"]["outputs"][node_id]["text"][0].splitlines()[-1]

        first = info("2")
        server.post("/free", {"unload_models": True})
        deadline = time.monotonic() + 30
        while "ComfyUI unloaded tiny_unet.pt" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        unloaded = "ComfyUI unloaded tiny_unet.pt" in server.log()
        again = info("3")  # the loader's output is still cached: the same model is loaded back
        expected = "loaded on cuda" if device == "cuda" else "loaded on cpu"
        ok = expected in first and unloaded and expected in again and server.log().count(
            "TalkingHead: loading tiny_unet.pt") == 1
        return {"status": "PASS" if ok else "FAIL", "first": first, "unloaded_by_free": unloaded, "again": again}
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (plumbing check)")
    parser.add_argument("--quick", action="store_true", help="fewer frames and steps")
    parser.add_argument("--only", nargs="+", choices=["rasteriser", "diff2lip", "gagavatar", "loader"])
    args = parser.parse_args()
    device = "cpu" if args.cpu else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run on a GPU machine, or pass --cpu for the plumbing only")
    checks = {"rasteriser": lambda: check_rasteriser(device), "diff2lip": lambda: check_diff2lip(device, args.quick),
              "gagavatar": lambda: check_gagavatar(device, args.quick), "loader": lambda: check_loader(device)}
    summary = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
    for name, check in checks.items():
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        try:
            summary[name] = check()
        except Exception as error:  # report and go on: one broken section must not hide the others
            summary[name] = {"status": "FAIL", "error": f"{type(error).__name__}: {error}"}
        summary[name]["seconds"] = round(time.perf_counter() - start, 1)
        print(f"[{summary[name]['status']}] {name}: {json.dumps(summary[name])}", flush=True)
    print(json.dumps(summary))
    sys.exit(0 if all(v.get("status") != "FAIL" for v in summary.values() if isinstance(v, dict)) else 1)


if __name__ == "__main__":
    main()
