"""Flow-guided initialisation of each frame's DDIM (an addition of this pack) vs the reference's shared seed noise.

    .venv/bin/python benchmarks/diff2lip_flow_start.py [--frames 12] [--steps 10]

Runs the tiny official-format Diff2Lip checkpoint from tests/fixtures (random weights: the released checkpoint is
not available here) on a real-photo talking clip with LibriVox speech, and prints the flow-warped frame-to-frame
difference inside the generated region for several ``flow_start`` fractions.  With random weights this says nothing
about lip-sync quality; it shows whether the mechanism itself adds or removes temporal change.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pack import load_pack

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    load_pack()
    import media
    from talkinghead.models.diff2lip import load_diff2lip
    from talkinghead.pipelines.diff2lip import lipsync
    from talkinghead.pipelines.diff2lip_enhance import warped_flicker
    from talkinghead.pipelines.face_detection import make_detector

    model = load_diff2lip(FIXTURES / "diff2lip" / "tiny_unet.pt", num_head_channels=32)
    clip = media.talking_clip(frames=args.frames, size=(160, 160))
    wav = media.speech_16k(seconds=args.frames / 25.0)
    detector = make_detector("blazeface_short")
    print(f"{args.frames} frames, {args.steps} DDIM steps, tiny random-weight checkpoint")
    for fraction in (0.0, 0.4, 0.7):
        out, mask, _ = lipsync(clip.frames, wav, 25.0, model, detector, steps=args.steps, flow_start=fraction)
        print(f"flow_start {fraction:.1f}: warped flicker in the generated region "
              f"{warped_flicker(out.astype(np.float32) / 255.0, mask):.4f}")


if __name__ == "__main__":
    main()
