"""The crop-cost benchmark's framings: scaled and moved keypoint squares, and the size cues' spread."""

import numpy as np
import pytest

from benchmarks.crop_cost import _scale_cues, _scaled, _shifted, spread
from fer_keras.detection import Face, keypoint_square

FACE = Face((100, 100, 80, 80), 0.9, {"left_eye": (120, 130), "right_eye": (160, 130), "nose": (140, 150),
                                      "mouth": (140, 170)})


def test_scaled_and_moved_squares_keep_the_keypoint_framing_rule():
    cx, cy, side, _ = keypoint_square(FACE)
    bigger = keypoint_square(_scaled(FACE, 1.1))
    assert bigger[:2] == pytest.approx((cx, cy)) and bigger[2] == pytest.approx(1.1 * side)
    moved = keypoint_square(_shifted(FACE, 0.05, -0.05))
    assert moved[:3] == pytest.approx((cx + 0.05 * side, cy - 0.05 * side, side))


def test_size_cues_and_their_spread():
    cues = _scale_cues(FACE, 100.0)
    assert cues["eyes to mouth"] == pytest.approx(np.log(100 / 40))
    assert cues["between the eyes"] == pytest.approx(np.log(100 / 40))
    assert cues["box side"] == pytest.approx(np.log(100 / 80))
    assert spread(np.log([1.0, 1.1, 0.9, 1.0, 1.0])) == pytest.approx(0.0)
    assert spread(np.array([0.0, 0.1, -0.1, 0.2, -0.2])) == pytest.approx(0.1)


def test_cost_by_framing_error_splits_the_faces_into_equal_groups_by_error():
    from benchmarks.crop_cost import cost_by_error

    error = np.array([0.4, 0.1, np.nan, 0.3, 0.2, 0.05, 0.5, 0.6, 0.0])
    truth_right = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1], bool)
    pipeline_right = np.array([0, 1, 0, 1, 1, 1, 0, 0, 1], bool)
    rows = cost_by_error(error, truth_right, pipeline_right, parts=2)
    assert [(lo, hi, n) for lo, hi, n, _, _ in rows] == [(0.0, 0.2, 4), (0.3, 0.6, 4)]  # the NaN left out
    assert [(t, q) for *_, t, q in rows] == [(1.0, 1.0), (1.0, 0.25)]  # the loss with the larger errors


def test_size_bias_by_class_is_each_class_median_against_all_faces():
    from benchmarks.crop_cost import size_bias_by_class

    cue = np.log([1.0, 1.0, 1.0, 1.1, 1.1, 1.1, 1.0])
    labels = np.array([0, 0, 0, 3, 3, 3, 5])
    bias = size_bias_by_class(cue, labels, ("happiness", "surprise", "sadness", "anger", "disgust", "fear"))
    assert list(bias) == ["happiness", "anger", "fear"]  # classes without faces are left out
    assert bias["happiness"] == (3, pytest.approx(0.0)) and bias["anger"] == (3, pytest.approx(np.log(1.1)))
