#!/usr/bin/env bash
# One command for everything that needs a CUDA GPU (about 3-6 minutes on one GPU, well under 8):
#   bash benchmarks/gpu_check.sh [--quick]
# 1. installs gsplat if it is absent (skipped with a note when there is no network),
# 2. gsplat vs PyTorch rasteriser parity (64² fixture and the 180k / 512²x32 scene),
# 3. Diff2Lip release size (random weights): fp32 / default / bf16 / fp16 differences and ddim25 frames per second,
# 4. GAGAvatar 512² (random weights): the same,
# 5. the loaders' CUDA path in a real ComfyUI server (model on the GPU, "unload models" offloads it, reuse).
# Prints PASS/FAIL/SKIP per section and a final JSON line; exit status 1 if a section failed.
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}"
if ! "$PY" -c "import gsplat" 2>/dev/null; then
  echo "[gpu_check] gsplat is not installed: trying pip install gsplat (its CUDA kernels build on first use)"
  timeout 180 "$PY" -m pip install --quiet gsplat || echo "[gpu_check] gsplat could not be installed: parity is skipped"
fi
exec timeout 420 "$PY" benchmarks/gpu_check.py "$@"
