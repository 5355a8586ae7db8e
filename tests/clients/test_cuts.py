"""Shot-cut detection on generated frames."""

import numpy as np
import pytest

from clients.cuts import ShotCutDetector


def scene(level, square_x, seed=0):
    rng = np.random.default_rng(seed)
    frame = np.clip(rng.normal(level, 8, (240, 320)), 0, 255).astype(np.uint8)
    frame[60:180, square_x:square_x + 120] = 230
    return np.repeat(frame[..., None], 3, axis=2)


def test_motion_within_a_shot_is_no_cut_and_a_new_shot_is():
    cuts = ShotCutDetector()
    flags = [cuts.update(scene(90, 20 + 2 * i, seed=1)) for i in range(20)]   # a face drifting, 2 px a frame
    flags += [cuts.update(scene(150, 160 - 2 * i, seed=2)) for i in range(10)]  # the next shot
    assert flags[0] is False  # the first frame starts the video, not a cut
    assert [i for i, f in enumerate(flags) if f] == [20]


def test_a_new_shot_with_the_same_brightness_is_found_by_the_difference():
    cuts = ShotCutDetector()
    flags = [cuts.update(scene(120, 20 + i, seed=1)) for i in range(8)]
    flags.append(cuts.update(scene(120, 190, seed=3)))  # same histogram mass, the face elsewhere
    assert flags[-1] and not any(flags[:-1])


def test_bad_settings():
    with pytest.raises(ValueError):
        ShotCutDetector(hist_threshold=0)
