"""Synthetic GAGAvatar inputs for tests, written in the OFFICIAL file layouts (random data: not FLAME, not a face).

- :func:`synthetic_flame` / :func:`write_synthetic_flame`: a ``FLAME_with_eye.pt``-layout dict with a
  small head-sized random mesh (any vertex count; 5023 gives the released GAGAvatar size).
- :func:`write_generic_model_pkl`: the same arrays as an official FLAME 2020 ``generic_model.pkl`` — Python-2 style
  protocol-2 pickle, chumpy ``Ch`` objects (pickled from a throw-away stand-in module named ``chumpy.ch``), a
  scipy-sparse ``J_regressor`` and an unsigned ``kintree_table``.
- :func:`write_synthetic_driver`: a tracked driver directory (``smoothed.pkl`` or ``optim.pkl`` + ``img_lmdb/`` with
  JPEG/PNG RGB crops, keys ``'{video}_{frame}'``), written independently of the code under test.
"""
from __future__ import annotations

import contextlib
import math
import pickle
import sys
import types
from pathlib import Path

import cv2
import lmdb
import numpy as np
import scipy.sparse
import torch

NUM_JOINTS = 5


def synthetic_flame(num_vertices: int = 64, num_faces: int = 120, seed: int = 0, with_landmarks: bool = True) -> dict:
    """Random FLAME-layout data: vertices on a 0.1-radius ellipsoid (×5 = a head-sized cloud around the origin)."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=(num_vertices, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    v_template = direction * np.array([0.08, 0.1, 0.09])
    skinning = np.exp(rng.normal(size=(num_vertices, NUM_JOINTS)) * 2)
    regressor = rng.random((NUM_JOINTS, num_vertices)) ** 8
    flame_model = {
        "f": rng.integers(0, num_vertices, size=(num_faces, 3)),
        "v_template": v_template,
        "shapedirs": rng.normal(scale=2e-3, size=(num_vertices, 3, 400)),
        "posedirs": rng.normal(scale=5e-3, size=(num_vertices, 3, 36)),
        "J_regressor": regressor / regressor.sum(axis=1, keepdims=True),
        "kintree_table": np.array([[-1, 0, 1, 1, 1], [0, 1, 2, 3, 4]]),
        "weights": skinning / skinning.sum(axis=1, keepdims=True),
    }
    flame = {"flame_model": {k: _typed(k, v) for k, v in flame_model.items()}, "lmk_embeddings": {}}
    if with_landmarks:
        def bary(*shape):
            weights = rng.random((*shape, 3)) + 0.1
            return weights / weights.sum(axis=-1, keepdims=True)

        landmarks = {
            "static_lmk_faces_idx": rng.integers(0, num_faces, size=(51,)), "static_lmk_bary_coords": bary(51),
            "dynamic_lmk_faces_idx": rng.integers(0, num_faces, size=(79, 17)),
            "dynamic_lmk_bary_coords": bary(79, 17),
            "full_lmk_faces_idx_with_eye": rng.integers(0, num_faces, size=(1, 70)),
            "full_lmk_bary_coords_with_eye": bary(1, 70),
        }
        flame["lmk_embeddings"] = {k: _typed(k, v) for k, v in landmarks.items()}
    return flame


def _typed(key: str, value: np.ndarray) -> torch.Tensor:
    integer = key in ("f", "kintree_table") or "idx" in key
    return torch.from_numpy(np.ascontiguousarray(value, dtype=np.int64 if integer else np.float32))


def write_synthetic_flame(path, **kwargs) -> dict:
    """Write :func:`synthetic_flame` as a ``FLAME_with_eye.pt`` file; returns the dict."""
    flame = synthetic_flame(**kwargs)
    torch.save(flame, path)
    return flame


@contextlib.contextmanager
def _fake_chumpy_module():
    """A temporary importable ``chumpy.ch.Ch`` so pickle records that class path (removed again afterwards)."""

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x, dtype=np.float64)

        def __getstate__(self):  # what chumpy pickles: its __dict__ without the weak-reference caches
            return {"x": self.x, "_dirty_vars": set(), "_itr": None, "_depends_on_deps": {},
                    "_make_dense": False, "_make_sparse": False}

    package, module = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")
    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    module.Ch, package.ch = Ch, module
    saved = {name: sys.modules.get(name) for name in ("chumpy", "chumpy.ch")}
    sys.modules.update({"chumpy": package, "chumpy.ch": module})
    try:
        yield Ch
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def write_generic_model_pkl(path, flame: dict) -> None:
    """Write ``flame`` (FLAME_with_eye layout) as a FLAME-2020-style ``generic_model.pkl`` (see module doc)."""
    model = {k: v.numpy() for k, v in flame["flame_model"].items()}
    kintree = model["kintree_table"].astype(np.int64)
    kintree[0, 0] = 2**32 - 1  # the official table is uint32 with the root's parent wrapped around
    with _fake_chumpy_module() as Ch:
        raw = {
            "f": model["f"].astype(np.uint32),
            "v_template": Ch(model["v_template"]),
            "shapedirs": Ch(model["shapedirs"]),
            "posedirs": model["posedirs"].astype(np.float64),
            "J_regressor": scipy.sparse.csc_matrix(model["J_regressor"].astype(np.float64)),
            "kintree_table": kintree.astype(np.uint32),
            "weights": model["weights"].astype(np.float64),
            "J": np.zeros((NUM_JOINTS, 3)),
            "bs_style": "lbs",
            "bs_type": "lrotmin",
        }
        payload = pickle.dumps(raw, protocol=2)
    # Module paths as a Python-2-era numpy/scipy wrote them.
    payload = payload.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    payload = payload.replace(b"cscipy.sparse._csc\n", b"cscipy.sparse.csc\n")
    Path(path).write_bytes(payload)


def synthetic_frame(index: int, size: int = 512) -> np.ndarray:
    """A smooth RGB uint8 test crop whose mean colour encodes ``index`` (survives JPEG)."""
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([0.5 + 0.3 * np.sin(2 * math.pi * (x + 0.1 * index)), 0.2 + 0.6 * y,
                     np.full_like(x, (index % 16) / 16.0)], axis=-1)
    return np.clip(base * 255 + 0.5, 0, 255).astype(np.uint8)


def synthetic_driver_arrays(num_frames: int, seed: int = 0) -> dict:
    """Tracked codes as the tracker writes them: the one synthetic driver generator's smooth ground truth
    (:func:`pipelines.gagavatar_enhance.evaluation.synthetic_driver_track`) plus a random identity shape and a box."""
    from talkinghead.pipelines.gagavatar_enhance.evaluation import synthetic_driver_track

    truth, _ = synthetic_driver_track(num_frames, seed=seed)
    rng = np.random.default_rng(seed)
    return {
        "shapecode": np.repeat(rng.normal(scale=0.5, size=(1, 300)), num_frames, 0).astype(np.float32),
        **truth,
        "bbox": np.tile(np.array([[0.2, 0.15, 0.8, 0.9]], np.float32), (num_frames, 1)),
    }


def write_synthetic_driver(path, num_frames: int = 12, image_set: bool = False, image_format: str = "jpeg",
                           video_name: str = "000869", frame_indices=None, seed: int = 0) -> dict:
    """Write a tracked driver in the official layout; returns the ground truth in frame order.

    Keys are ``f'{video_name}_{frame}'`` inserted in shuffled order (LMDB sorts them as strings, so ``_10`` comes
    before ``_2``).  Returns dict(keys, images uint8 [T,512,512,3], and the code arrays), sorted by frame number.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    frames = list(range(num_frames)) if frame_indices is None else list(frame_indices)
    truth = synthetic_driver_arrays(len(frames), seed)
    truth["keys"] = [f"{video_name}_{frame}" for frame in frames]
    truth["images"] = np.stack([synthetic_frame(frame) for frame in frames])
    order = np.random.default_rng(seed + 1).permutation(len(frames))
    records = {}
    for i in order:
        records[truth["keys"][i]] = {name: truth[name][i] for name in
                                     ("bbox", "shapecode", "expcode", "posecode", "eyecode", "transform_matrix")}
    with open(path / ("optim.pkl" if image_set else "smoothed.pkl"), "wb") as handle:
        pickle.dump(records, handle)
    env = lmdb.open(str(path / "img_lmdb"), map_size=1 << 30)
    with env.begin(write=True) as txn:
        for i in order:
            bgr = cv2.cvtColor(truth["images"][i], cv2.COLOR_RGB2BGR)
            params = [cv2.IMWRITE_JPEG_QUALITY, 95] if image_format == "jpeg" else []
            ok, encoded = cv2.imencode(".jpg" if image_format == "jpeg" else ".png", bgr, params)
            if not ok:
                raise RuntimeError(f"OpenCV could not encode a {image_format} test frame")
            txn.put(truth["keys"][i].encode(), encoded.tobytes())
    env.close()
    return truth


def random_weights(state: dict, seed: int = 0) -> dict:
    """Deterministic random values for every tensor: fan-in-scaled weights, small biases, unit norms/modulation."""
    generator = torch.Generator().manual_seed(seed)
    filled = {}
    for key, tensor in state.items():
        noise = torch.randn(tensor.shape, generator=generator)
        leaf = key.rsplit(".", 1)[-1]
        if key.endswith(("norm.weight", "norm1.weight", "norm2.weight", "modulation.bias")):
            value = 1 + 0.1 * noise
        elif leaf == "gamma":
            value = 0.1 + 0.05 * noise
        elif ".noises." in key or key.endswith("constant_input.weight"):
            value = noise
        elif leaf == "bias" or tensor.ndim <= 1:
            value = 0.02 * noise
        elif key in ("head_base",) or leaf in ("pos_embed", "cls_token"):
            value = 0.5 * noise
        else:
            value = noise / math.sqrt(max(tensor.numel() // tensor.shape[0], 1))
        filled[key] = value.to(tensor.dtype)
    return filled


def tiny_gagavatar_state_dict(num_vertices: int = 64, refine_levels: int = 4, seed: int = 0) -> dict:
    """A random state dict of the GAGAvatar family in the official key layout, small enough for CPU tests.

    DINOv2 with 2 blocks of width 64 on 28² input (2×2 patches), 16-channel DPT head lifting 16² plane points,
    ``num_vertices`` expression Gaussians (match the FLAME file), 32 feature channels, and a StyleUNet refiner of
    side 4·2**refine_levels (64 by default).  Includes the training-only ``mask_token`` like a real checkpoint.
    """
    from talkinghead.models.dinov2_dpt import DinoDPTConfig, DinoDPTEncoder
    from talkinghead.models.gs_generators import ConvGSGenerator, LinearGSGenerator
    from talkinghead.models.style_unet import StyleUNet, StyleUNetConfig

    embed, features, head_dim = 64, 16, 16
    network = torch.nn.Module()
    network.head_base = torch.nn.Parameter(torch.zeros(num_vertices, head_dim))
    network.base_model = DinoDPTEncoder(DinoDPTConfig(patch_size=14, grid=2, embed_dim=embed, depth=2, mlp_ratio=2.0,
                                                      project_channels=(8, 8, 8, 8), upsample_factors=(4, 2),
                                                      features=features))
    network.gs_generator_g = LinearGSGenerator([(head_dim + embed, 32), (32, 32)], dir_dim=27, head_hidden=16,
                                               color_dim=32)
    network.gs_generator_l0 = ConvGSGenerator(features, 27, hidden=16, num_hidden_convs=3, out_dim=41)
    network.gs_generator_l1 = ConvGSGenerator(features, 27, hidden=16, num_hidden_convs=3, out_dim=41)
    network.upsampler = StyleUNet(StyleUNetConfig(in_dim=32, first_kernel=1, unet_channels=(8,) * (refine_levels + 1),
                                                  style_channels=(8,) * (refine_levels + 1), num_style_feat=16,
                                                  num_mlp=2, out_dim=3))
    state = dict(network.state_dict())
    state["base_model.dino_model.mask_token"] = torch.zeros(1, embed)
    return random_weights(state, seed)


# ---------------------------------------------------------------- formula weights and inputs
def _lowbias32(x: np.ndarray) -> np.ndarray:
    mask = np.uint64(0xFFFFFFFF)
    x = x ^ (x >> np.uint64(16))
    x = (x * np.uint64(0x7FEB352D)) & mask
    x = x ^ (x >> np.uint64(15))
    x = (x * np.uint64(0x846CA68B)) & mask
    return x ^ (x >> np.uint64(16))


def formula_tensor(name: str, shape: list[int], index: int) -> np.ndarray:
    """Deterministic value of manifest tensor number `index` (first matching rule wins)."""
    n = int(np.prod(shape)) if shape else 1
    offset = np.uint64(((index + 1) * 0x9E3779B9) & 0xFFFFFFFF)
    u = _lowbias32((np.arange(n, dtype=np.uint64) + offset) & np.uint64(0xFFFFFFFF)).astype(np.float64) / 2 ** 32
    s = 2 * u - 1
    leaf = name.rsplit(".", 1)[-1]
    if name.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
        value = 1 + 0.1 * s
    elif leaf == "gamma":
        value = 0.1 + 0.05 * s
    elif name.endswith("modulation.bias"):
        value = 1 + 0.1 * s
    elif ".noises.noise" in name or name.endswith("constant_input.weight"):
        value = np.sqrt(3) * s
    elif leaf in ("cls_token", "pos_embed", "mask_token", "head_base"):
        value = 0.02 * np.sqrt(3) * s
    elif len(shape) == 1 or leaf == "bias":
        value = 0.02 * s
    else:
        value = np.sqrt(3) * s / np.sqrt(n / shape[0])
    return value.astype(np.float32).reshape(shape)


def e2e_source_image() -> np.ndarray:
    y, x = np.mgrid[0:518, 0:518].astype(np.float64)
    c = np.arange(3, dtype=np.float64)[:, None, None]
    image = (0.5 + 0.35 * np.sin(2 * np.pi * (x / 97 + c / 3)) * np.cos(2 * np.pi * y / 61)
             + 0.1 * np.cos(2 * np.pi * (x + y) / 37))
    return image.astype(np.float32)


def refiner_input() -> np.ndarray:
    y, x = np.mgrid[0:512, 0:512].astype(np.float64)
    c = np.arange(32, dtype=np.float64)[:, None, None]
    value = (0.5 * np.sin(2 * np.pi * (x * (c + 1) / 512 * 3 + y / 173))
             + 0.25 * np.cos(2 * np.pi * y * (c % 5 + 1) / 512))
    return value.astype(np.float16).astype(np.float32)


def tiny_scene(root, num_frames: int = 3, fps: float | None = None):
    """The tiny test avatar used across the GAGAvatar tests, built under ``root``: a tiny random model, a synthetic
    FLAME (64 vertices), a synthetic driver of ``num_frames`` and the source encoded from its first camera.
    Returns (model, flame, avatar, source_shape, driver)."""
    from talkinghead.models.flame import load_flame
    from talkinghead.models.gagavatar import load_gagavatar
    from talkinghead.pipelines import gagavatar as gg

    root = Path(root)
    write_synthetic_flame(root / "FLAME_with_eye.pt", num_vertices=64, seed=1)
    write_synthetic_driver(root / "driver", num_frames=num_frames)
    model = load_gagavatar(tiny_gagavatar_state_dict(num_vertices=64))
    driver = gg.read_tracked(root / "driver", fps=fps)
    avatar = gg.encode_source_cached(model, synthetic_frame(0), driver.transform_matrix[0])
    source_shape = np.random.default_rng(5).normal(scale=0.5, size=300).astype(np.float32)
    return model, load_flame(root / "FLAME_with_eye.pt"), avatar, source_shape, driver
