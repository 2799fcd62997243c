"""White balance in Colour Match: gray world / shades of gray remove a pure colour cast of the generated region."""
from __future__ import annotations

import numpy as np
import pytest
from diff2lip_enhance_media import enhance_clip

from talkinghead.pipelines.diff2lip_enhance import boundary_delta_e, match_color
from talkinghead.pipelines.diff2lip_enhance.color_match import illuminant

CAST = np.float32([1.12, 1.0, 0.84])


@pytest.fixture(scope="module")
def cast_clip():
    clip = enhance_clip(frames=3, size=(192, 192))
    inside = clip.region[..., None] > 0
    tinted = np.where(inside, np.clip(clip.original * CAST, 0, 1), clip.original).astype(np.float32)
    return clip, tinted


@pytest.mark.parametrize("white_balance", ["gray_world", "shades_of_gray"])
def test_white_balance_alone_undoes_a_colour_cast(cast_clip, white_balance):
    clip, tinted = cast_clip
    inside = clip.region > 0
    balanced = match_color(clip.original, tinted, clip.region, method="none", white_balance=white_balance)
    before = np.abs(tinted - clip.original)[inside].mean()
    after = np.abs(balanced - clip.original)[inside].mean()
    assert before > 0.03 and after < 0.2 * before, (before, after)
    assert boundary_delta_e(balanced, clip.region) < 0.5 * boundary_delta_e(tinted, clip.region)
    np.testing.assert_array_equal(balanced[~inside], tinted[~inside])


def test_off_with_method_none_changes_nothing_and_bad_names_are_refused(cast_clip):
    clip, tinted = cast_clip
    np.testing.assert_array_equal(match_color(clip.original, tinted, clip.region, method="none"), tinted)
    with pytest.raises(ValueError, match="white_balance"):
        match_color(clip.original, tinted, clip.region, white_balance="auto")


def test_illuminant_estimates():
    pixels = np.array([[0.2, 0.4, 0.6], [0.4, 0.4, 0.2]])
    np.testing.assert_allclose(illuminant(pixels, 1.0), [0.3, 0.4, 0.4])
    shades = illuminant(pixels, 6.0)
    assert shades[0] > 0.3 and shades[2] > 0.4  # p = 6 leans towards the brightest pixels
