"""GAGAvatar driver enhancements take and return TrackedDriver (nodes pass the socket's driver straight through)."""
from __future__ import annotations

import numpy as np
import pytest

from talkinghead.models.flame import load_flame
from talkinghead.pipelines.gagavatar import TrackedDriver, as_driver
from talkinghead.pipelines.gagavatar_enhance import enhance_driver, enhance_frames, get_preset
from talkinghead.pipelines.gagavatar_enhance.evaluation import synthetic_driver_track


@pytest.fixture(scope="module")
def driver():
    _, noisy = synthetic_driver_track(num_frames=40, seed=5)
    return as_driver(noisy)  # shapecode defaults to zeros


def test_a_tracked_driver_comes_back_as_a_tracked_driver_equal_to_the_dict_path(driver, gagavatar_fixtures):
    flame = load_flame(gagavatar_fixtures / "flame_synthetic_small.pt")
    enhanced = get_preset("enhanced")
    out = enhance_driver(driver, enhanced, flame=flame)
    from_dict = enhance_driver(driver.as_dict(), enhanced, flame=flame)
    assert isinstance(out, TrackedDriver) and isinstance(from_dict, dict) and out is not driver
    assert out.keys == driver.keys and len(out) == len(driver)
    for name, value in from_dict.items():
        np.testing.assert_array_equal(getattr(out, name), value, err_msg=name)
    assert not np.array_equal(out.expcode, driver.expcode)  # something ran

    frames = np.full((2, 128, 128, 3), 0.5, np.float32)
    frames[:, 40:90, 30:100] = np.random.default_rng(0).random((50, 70, 3))
    two = as_driver({name: from_dict[name][:2] for name in ("expcode", "posecode", "eyecode", "transform_matrix",
                                                           "shapecode")})
    eyes = get_preset("gaze_correct")
    np.testing.assert_array_equal(enhance_frames(frames, eyes, driver=two, flame=flame),
                                  enhance_frames(frames, eyes, driver=two.as_dict(), flame=flame))
