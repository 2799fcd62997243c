"""Region-aware expression transfer in FLAME vertex space.

FLAME expression coefficients are global PCA components, so slicing the 100-vector by index (as a naive add-on does)
does not isolate eyes or mouth.  Instead, with B = expression basis [3V, K] (shapedirs[..., 300:], the linear part of
FLAME) and e the driver's coefficients:

    d = B e                        (per-vertex displacement of the expression)
    d' = W d                       (W: per-vertex region weight, 1 outside the named regions)
    e' = B^+ d'                    (least-squares back-projection; B^+ precomputed once)
    e_out = blend * e' + (1 - blend) * e

which is the fixed linear map e_out = (blend * B^+ W B + (1 - blend) I) e, so the per-frame cost is one [K,K]
product.  W d is generally not in the span of B; the part that is lost is the least-squares residual, reported per
region by :meth:`RegionExpressionTransfer.region_report`.

Vertex regions (eyes, brows, nose, mouth, cheeks_jaw), in order of preference:

1. user-supplied index sets: ``{region: indices}`` or the official ``FLAME_masks.pkl`` (see
   :func:`regions_from_flame_masks`);
2. the template's 70-point landmarks (iBUG 68 + 2 eye centres, GAGAvatar's ``*_with_eye`` embedding): each vertex
   joins the landmark group that minimises distance / group radius, if that ratio is <= 1 (radii in units of the
   inter-ocular distance, :data:`LANDMARK_RADII`; a weighted nearest-landmark partition);
3. fallback without landmarks: boxes in the template's bounding box (:data:`TEMPLATE_BOXES`).  These fractions
   are approximate (not checked against real FLAME, which is not available offline); prefer 1 or 2.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from ...models.flame import FlameLayer, load_legacy_pickle, to_numpy

REGIONS = ("eyes", "brows", "nose", "mouth", "cheeks_jaw")
# Hand-tuned values for eyes / nose / mouth; brows and cheeks_jaw chosen between them.
DEFAULT_REGION_WEIGHTS = {"eyes": 0.9, "brows": 0.9, "nose": 0.95, "mouth": 0.7, "cheeks_jaw": 0.85}

# iBUG-68 landmark groups (+ 68/69 = eye centres in the 70-point embedding).
LANDMARK_GROUPS = {
    "cheeks_jaw": tuple(range(0, 17)),
    "brows": tuple(range(17, 27)),
    "nose": tuple(range(27, 36)),
    "eyes": tuple(range(36, 48)) + (68, 69),
    "mouth": tuple(range(48, 68)),
}
# Cheek centres are far from every landmark: add anchors halfway between the jaw line and the nose wings / mouth
# corners so the cheeks are reached by the cheeks_jaw group rather than split between nose and mouth.
CHEEK_ANCHORS = ((2, 31), (14, 35), (4, 48), (12, 54), (1, 36), (15, 45))
LANDMARK_RADII = {"eyes": 0.35, "brows": 0.3, "nose": 0.3, "mouth": 0.4, "cheeks_jaw": 0.6}

# (u = x / half width from the centre, v = height fraction from the bottom, front-only) boxes in the template's
# bounding box: (|u| range, v range).  Approximate; see the module doc.
TEMPLATE_BOXES = {
    "mouth": ((0.0, 0.35), (0.30, 0.42)),
    "nose": ((0.0, 0.18), (0.42, 0.58)),
    "eyes": ((0.12, 0.55), (0.56, 0.66)),
    "brows": ((0.05, 0.6), (0.66, 0.74)),
    "cheeks_jaw": ((0.0, 0.8), (0.22, 0.58)),
}
_FRONT_DEPTH_FRACTION = 0.55  # vertices in the front 45% of the depth range count as face
_PRIORITY = ("mouth", "nose", "eyes", "brows", "cheeks_jaw")  # who keeps a vertex claimed twice


def _exclusive(regions: Mapping[str, np.ndarray], num_vertices: int) -> dict[str, np.ndarray]:
    """Make regions disjoint (earlier in _PRIORITY wins) and validate indices."""
    unknown = [name for name in regions if name not in REGIONS]
    if unknown:
        raise ValueError(f"unknown region names {unknown}; use {list(REGIONS)}")
    taken = np.zeros(num_vertices, bool)
    result = {}
    for name in _PRIORITY:
        if name not in regions:
            continue
        indices = np.unique(np.asarray(regions[name], dtype=np.int64).reshape(-1))
        if indices.size and (indices.min() < 0 or indices.max() >= num_vertices):
            raise ValueError(f"region {name!r} has vertex indices outside [0, {num_vertices})")
        indices = indices[~taken[indices]]
        taken[indices] = True
        result[name] = indices
    return {name: result[name] for name in REGIONS if name in result}


def landmark_regions(template: np.ndarray, landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Vertex regions of ``template`` [V,3] from its 70 (or 68) landmarks [L,3] (weighted nearest-landmark rule)."""
    if landmarks.shape[0] < 68:
        raise ValueError(f"landmark_regions needs the 68/70-point landmarks, got {landmarks.shape[0]}")
    if landmarks.shape[0] >= 70:
        interocular = np.linalg.norm(landmarks[68] - landmarks[69])
    else:
        interocular = np.linalg.norm(landmarks[36:42].mean(0) - landmarks[42:48].mean(0))
    names, points, radii = [], [], []
    for name, indices in LANDMARK_GROUPS.items():
        for index in indices:
            if index < landmarks.shape[0]:
                names.append(name)
                points.append(landmarks[index])
                radii.append(LANDMARK_RADII[name])
    for a, b in CHEEK_ANCHORS:
        names.append("cheeks_jaw")
        points.append(0.5 * (landmarks[a] + landmarks[b]))
        radii.append(LANDMARK_RADII["cheeks_jaw"])
    distances = np.linalg.norm(template[:, None, :] - np.asarray(points)[None], axis=-1)
    scaled = distances / (np.asarray(radii) * interocular)
    nearest = scaled.argmin(axis=1)
    inside = scaled[np.arange(len(template)), nearest] <= 1.0
    names = np.asarray(names)
    return _exclusive({n: np.flatnonzero(inside & (names[nearest] == n)) for n in REGIONS}, len(template))


def box_regions(template: np.ndarray) -> dict[str, np.ndarray]:
    """Fallback vertex regions from :data:`TEMPLATE_BOXES` in the template's bounding box (approximate)."""
    low, high = template.min(axis=0), template.max(axis=0)
    extent = np.maximum(high - low, 1e-12)
    u = np.abs(template[:, 0] - 0.5 * (low[0] + high[0])) / (0.5 * extent[0])
    v = (template[:, 1] - low[1]) / extent[1]
    front = (template[:, 2] - low[2]) / extent[2] >= _FRONT_DEPTH_FRACTION
    regions = {}
    for name, ((u0, u1), (v0, v1)) in TEMPLATE_BOXES.items():
        regions[name] = np.flatnonzero(front & (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1))
    return _exclusive(regions, len(template))


def regions_from_flame_masks(masks: Mapping[str, np.ndarray], num_vertices: int) -> dict[str, np.ndarray]:
    """Regions from the official ``FLAME_masks.pkl`` dict (vertex index arrays per key).

    Mapping: mouth = lips, nose = nose, eyes = left/right_eye_region + eyeballs (or eye_region), brows = forehead,
    cheeks_jaw = face minus all of these.  A dict keyed only by :data:`REGIONS` names is used as is.
    """
    if set(masks) <= set(REGIONS):
        return _exclusive({k: to_numpy(v) for k, v in masks.items() if k in REGIONS}, num_vertices)
    def union(*keys):
        arrays = [to_numpy(masks[k]).reshape(-1) for k in keys if k in masks]
        return np.unique(np.concatenate(arrays)).astype(np.int64) if arrays else np.zeros(0, np.int64)
    required = ("lips", "nose", "forehead", "face")
    missing = [k for k in required if k not in masks]
    if missing:
        raise ValueError(f"FLAME masks lack {missing}; expected the FLAME_masks.pkl keys or {list(REGIONS)}")
    eyes = union("left_eye_region", "right_eye_region", "eye_region", "left_eyeball", "right_eyeball")
    regions = {"mouth": union("lips"), "nose": union("nose"), "eyes": eyes, "brows": union("forehead")}
    regions["cheeks_jaw"] = np.setdiff1d(union("face"), np.concatenate(list(regions.values())))
    return _exclusive(regions, num_vertices)


def load_region_masks(path) -> dict[str, np.ndarray]:
    """Read ``FLAME_masks.pkl`` (numpy-only restricted unpickling) as a dict of index arrays."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"FLAME masks file {path} not found")
    masks = load_legacy_pickle(path)
    if not isinstance(masks, Mapping):
        raise ValueError(f"{path}: expected a dict of vertex index arrays, got {type(masks).__name__}")
    return dict(masks)


def flame_template_regions(flame: FlameLayer) -> dict[str, np.ndarray]:
    """Regions of a FLAME layer's template: landmark rule when it has the 70-point embedding, else boxes."""
    template = flame.v_template.detach().cpu().numpy().astype(np.float64)
    if flame.has_landmarks:
        with torch.no_grad():
            landmarks = flame.landmarks(flame.v_template[None])[0].cpu().numpy().astype(np.float64)
        return landmark_regions(template, landmarks)
    return box_regions(template)


def _pseudo_inverse(basis: np.ndarray, rcond: float = 1e-12) -> np.ndarray:
    """B^+ [K, 3V] of a tall basis through the eigen-decomposition of the K x K Gram matrix.

    Equal to np.linalg.pinv for a full-rank basis (small singular values are cut like pinv's rcond, squared), but
    a [15069, 100] FLAME basis takes milliseconds instead of an SVD of the tall matrix.
    """
    eigenvalues, eigenvectors = np.linalg.eigh(basis.T @ basis)
    keep = eigenvalues > rcond * max(eigenvalues.max(), 0.0)
    inverse = np.where(keep, 1.0 / np.where(keep, eigenvalues, 1.0), 0.0)
    return (eigenvectors * inverse) @ eigenvectors.T @ basis.T


@dataclass(frozen=True)
class ExpressionTransferConfig:
    """region_weights: displacement scale per region (identity sensitivity; unnamed vertices keep 1).
    blend: share of the region-scaled coefficients in the output (seed: 0.8 new / 0.2 original)."""

    region_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_REGION_WEIGHTS))
    blend: float = 0.8


class RegionExpressionTransfer:
    """Precomputed region-aware expression map for one expression basis and region partition."""

    def __init__(self, expression_basis: np.ndarray, regions: Mapping[str, np.ndarray],
                 config: ExpressionTransferConfig = ExpressionTransferConfig()):
        basis = np.asarray(expression_basis, dtype=np.float64)
        if basis.ndim != 3 or basis.shape[1] != 3:
            raise ValueError(f"expression_basis must be [V,3,K], got {basis.shape}")
        if not 0.0 <= config.blend <= 1.0:
            raise ValueError(f"blend must be in [0, 1], got {config.blend}")
        unknown = [name for name in config.region_weights if name not in REGIONS]
        if unknown:
            raise ValueError(f"region_weights has unknown regions {unknown}; use {list(REGIONS)}")
        self.num_vertices, _, self.num_components = basis.shape
        self.regions = _exclusive(regions, self.num_vertices)
        self.config = config
        self.basis = basis.reshape(-1, self.num_components)  # [3V, K], rows x,y,z per vertex
        vertex_weight = np.ones(self.num_vertices)
        for name, indices in self.regions.items():
            vertex_weight[indices] = config.region_weights.get(name, 1.0)
        self.row_weight = np.repeat(vertex_weight, 3)
        self.region_map = _pseudo_inverse(self.basis) @ (self.row_weight[:, None] * self.basis)  # B^+ W B, [K, K]
        self.matrix = config.blend * self.region_map + (1.0 - config.blend) * np.eye(self.num_components)

    @classmethod
    def from_flame(cls, flame: FlameLayer, regions: Mapping[str, np.ndarray] | None = None,
                   config: ExpressionTransferConfig = ExpressionTransferConfig()) -> "RegionExpressionTransfer":
        """Build from a FLAME layer (``models.flame.load_flame``); regions default to :func:`flame_template_regions`."""
        if regions is None:
            regions = flame_template_regions(flame)
        elif not set(regions) <= set(REGIONS):
            regions = regions_from_flame_masks(regions, flame.num_vertices)
        return cls(flame.expression_basis.detach().cpu().numpy(), regions, config)

    def transfer(self, expcode: np.ndarray) -> np.ndarray:
        """Map expression coefficients [T,K] (or [K]) to region-weighted ones, same shape and dtype."""
        expcode = np.asarray(expcode)
        if expcode.shape[-1] != self.num_components:
            raise ValueError(f"expcode must have {self.num_components} coefficients, got shape {expcode.shape}")
        return (expcode.astype(np.float64) @ self.matrix.T).astype(expcode.dtype)

    def apply(self, driver: Mapping[str, np.ndarray]) -> dict:
        """New driver dict with ``expcode`` transferred (other fields shared)."""
        if "expcode" not in driver:
            raise ValueError("driver has no 'expcode' field to transfer")
        return {**driver, "expcode": self.transfer(driver["expcode"])}

    def region_report(self, expcode: np.ndarray) -> dict[str, dict[str, float]]:
        """Per region over all frames: achieved displacement ratio |d_r new| / |d_r old|, the requested ratio
        blend * w_r + (1 - blend), and the least-squares residual |(B B^+ W B - W B) e|_r / |d_r| (the achieved
        ratio is within blend * residual of the request)."""
        expcode = np.atleast_2d(np.asarray(expcode, dtype=np.float64))
        old = expcode @ self.basis.T  # [T, 3V]
        new = (expcode @ self.matrix.T) @ self.basis.T
        residual = (expcode @ self.region_map.T) @ self.basis.T - old * self.row_weight
        report = {}
        for name, indices in self.regions.items():
            rows = (3 * indices[:, None] + np.arange(3)).reshape(-1)
            norm_old = np.linalg.norm(old[:, rows])
            if rows.size == 0 or norm_old == 0:
                continue
            weight = self.config.region_weights.get(name, 1.0)
            report[name] = {
                "ratio": float(np.linalg.norm(new[:, rows]) / norm_old),
                "requested": float(self.config.blend * weight + 1.0 - self.config.blend),
                "residual": float(np.linalg.norm(residual[:, rows]) / norm_old),
                "vertices": int(indices.size),
            }
        return report
