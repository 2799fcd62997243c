"""Cost and effect of super-resolving the 128² generated crop before it is resized into a larger face box.

For each box size, the crop (a real-photo face, blurred like Diff2Lip output) is pasted by plain bilinear resize (the
reference), through Real-ESRGAN x2 / x4, and through the weights-free *Sharpen Mouth* unsharp mask. Prints ms per
crop and a no-reference sharpness figure of the pasted mouth half: mean Sobel gradient magnitude of luma, and the
variance of the Laplacian, each as a ratio to the plain resize.

Real-ESRGAN weights ship in no package. With ``--weights DIR`` holding RealESRGAN_x2plus.pth / RealESRGAN_x4plus.pth
both figures are measured; without it the networks are built at the released sizes (64 features, 23 blocks) with
random weights, so only their TIME is meaningful and the sharpness columns say n/a.

    .venv/bin/python benchmarks/diff2lip_superres.py [--boxes 256 384] [--repeats 2] [--weights DIR]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from pack import load_pack  # noqa: E402


def _networks(weights: Path | None) -> dict:
    """{name: (spandrel descriptor, real weights?)} for x2 and x4."""
    import spandrel
    from spandrel.architectures.ESRGAN import ESRGAN

    models = {}
    for scale in (2, 4):
        path = None if weights is None else weights / f"RealESRGAN_x{scale}plus.pth"
        if path is not None and path.is_file():
            models[f"Real-ESRGAN x{scale}"] = (spandrel.ModelLoader().load_from_file(str(path)), True)
        else:
            torch.manual_seed(scale)
            # the released x2plus runs its body at half resolution on pixel-unshuffled input (12 channels)
            layout = dict(in_nc=12, scale=4, shuffle_factor=2) if scale == 2 else dict(in_nc=3, scale=4)
            state = ESRGAN(out_nc=3, num_filters=64, num_blocks=23, **layout).state_dict()
            descriptor = spandrel.ModelLoader().load_from_state_dict(state)
            assert descriptor.scale == scale
            models[f"Real-ESRGAN x{scale}"] = (descriptor, False)
    return models


def _sharpness(image: np.ndarray) -> tuple[float, float]:
    """(mean Sobel |∇| of luma, variance of the Laplacian) of the lower half of a float RGB image."""
    luma = cv2.cvtColor(image.astype(np.float32), cv2.COLOR_RGB2GRAY)[image.shape[0] // 2:]
    gx, gy = cv2.Sobel(luma, cv2.CV_32F, 1, 0), cv2.Sobel(luma, cv2.CV_32F, 0, 1)
    return float(np.sqrt(gx ** 2 + gy ** 2).mean()), float(cv2.Laplacian(luma, cv2.CV_32F).var())


def _timed(function, repeats: int):
    result, best = None, float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return result, 1000 * best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boxes", type=int, nargs="+", default=[256, 384])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--weights", type=Path, default=None, help="folder with RealESRGAN_x2plus/x4plus.pth")
    args = parser.parse_args(argv)
    load_pack()
    import media

    from talkinghead.pipelines.diff2lip_enhance import sharpen_region
    from talkinghead.pipelines.diff2lip_enhance.superres import CropUpscaler

    x1, y1, x2, y2 = (int(v) for v in media.face_box("grace_hopper"))
    face = media.photo("grace_hopper")[y1:y2, x1:x2].astype(np.float32) / 255.0
    crop = cv2.GaussianBlur(cv2.resize(face, (128, 128), interpolation=cv2.INTER_AREA), (0, 0), 0.8)
    networks = _networks(args.weights)
    print(f"torch threads {torch.get_num_threads()}; crop 128x128 (Grace Hopper, blurred as Diff2Lip output)")
    for box in args.boxes:
        plain, plain_ms = _timed(lambda: cv2.resize(crop, (box, box), interpolation=cv2.INTER_LINEAR), args.repeats)
        base = _sharpness(plain)
        print(f"box {box}x{box}: plain bilinear {plain_ms:7.1f} ms, gradient {base[0]:.4f}, Laplacian var "
              f"{base[1]:.5f}")
        rows = [("Sharpen Mouth 0.3 (unsharp)",
                 lambda: sharpen_region(plain[None], np.ones((1, box, box), np.float32), strength=0.3,
                                        sigma=1.0)[0], True)]
        for name, (model, real) in networks.items():
            upscaler = CropUpscaler(model)
            rows.append((name, lambda u=upscaler: cv2.resize(u(crop), (box, box), interpolation=cv2.INTER_AREA),
                         real))
        for name, run, real in rows:
            result, ms = _timed(run, args.repeats)
            if real:
                gradient, laplacian = _sharpness(result)
                effect = f"gradient x{gradient / base[0]:.2f}, Laplacian var x{laplacian / base[1]:.2f}"
            else:
                effect = "sharpness n/a (random weights of the released size: time only)"
            print(f"  {name:<30s} {ms:8.1f} ms/crop  {effect}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
