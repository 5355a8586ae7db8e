"""Sanity checks (cascading randomisation), region shares, keypoints followed into crops, the random
baselines of the faithfulness report and the Quantus cross-check."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from fer_keras.detection import Face, crop_face, keypoints_in_crop
from fer_keras.explain.regions import (
    REGIONS,
    canonical_keypoints,
    face_regions,
    region_masks,
    region_shares,
    region_table,
    table_markdown,
)
from fer_keras.explain.sanity import cascading_randomisation, spearman_rows, verdicts, weighted_layers_top_down
from fer_keras.models import build_model


def test_spearman_rows_matches_scipy_and_is_zero_for_constant_rows():
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 4, 4)), rng.random((5, 4, 4))
    b[1] = a[1] * 3 + 1  # same order
    b[2] = np.round(b[2], 1)  # ties
    expected = [spearmanr(x.ravel(), y.ravel()).statistic for x, y in zip(a, b)]
    np.testing.assert_allclose(spearman_rows(a, b), expected, atol=1e-12)
    assert spearman_rows(a[:1], np.zeros((1, 4, 4)))[0] == 0.0


def _gradcam(model, x, ids):
    import tensorflow as tf

    from fer_keras.explain.cams import cam_tape, gradcam_model

    return cam_tape(gradcam_model(model), tf.constant(x, tf.float32), "gradcam", tf.constant(ids))[0].numpy()


def test_cascading_randomisation_tells_a_model_dependent_map_from_an_input_edge_map():
    model = build_model("gimefive", width=1 / 8)
    x = np.random.default_rng(1).integers(0, 255, (6, 64, 64, 1)).astype(np.float32)
    before = [w.copy() for w in model.get_weights()]

    def maps_of(m, method, faces, ids):
        if method == "edges":  # ignores the model entirely: what a failing method looks like
            return np.abs(np.diff(faces[..., 0], axis=1))
        return _gradcam(m, faces, ids)

    report = cascading_randomisation(model, x, ["gradcam", "edges"], maps_of, seed=0, stop_after="block4_conv")
    assert report["layers"][:4] == ["logits", "dense2", "dense1", "block5_bn"]
    assert report["layers"][-1] == "block4_conv" and weighted_layers_top_down(model)[0] == "logits"
    assert all(v == pytest.approx(1.0) for v in report["methods"]["edges"])
    assert min(report["methods"]["gradcam"]) < 0.5
    verdict = verdicts(report, "last_conv")
    assert verdict["edges"] is False
    # the trained model itself is left as it was
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    with pytest.raises(ValueError, match="not a weighted layer"):
        cascading_randomisation(model, x, ["edges"], maps_of, stop_after="nope")


def test_region_masks_sit_where_the_face_is_and_follow_its_tilt():
    size = 64
    masks = region_masks(canonical_keypoints(size), size)
    assert set(masks) == set(REGIONS)
    total = sum(m.astype(int) for m in masks.values())
    assert total.max() == 1  # disjoint
    rows = {name: np.nonzero(m.any(1))[0].mean() for name, m in masks.items()}
    assert rows["eyes"] < rows["nose"] < rows["mouth"]
    marks = canonical_keypoints(size)
    assert masks["eyes"][int(round(marks["left_eye"][1])), int(round(marks["left_eye"][0]))]
    assert masks["mouth"][int(round(marks["mouth"][1])), int(round(marks["mouth"][0]))]
    # a face tilted by 90 degrees (eyes stacked vertically, mouth to the side): the mouth region moves with it
    tilted = region_masks({"left_eye": (40, 20), "right_eye": (40, 44), "mouth": (15, 32)}, size)
    cols = np.nonzero(tilted["mouth"].any(0))[0]
    assert cols.max() < 25
    # MTCNN's mouth corners do for the mouth; missing keypoints are one clear error
    corners = region_masks({"left_eye": (20, 26), "right_eye": (44, 26), "mouth_left": (26, 50),
                            "mouth_right": (38, 50)}, size)
    assert corners["mouth"][50, 32]
    with pytest.raises(ValueError, match="missing \\['mouth'\\]"):
        region_masks({"left_eye": (20, 26), "right_eye": (44, 26)}, size)
    assert face_regions({"left_eye": (20, 26)}, size)[1] == "template"


def test_region_shares_and_the_per_class_table():
    size = 64
    masks = region_masks(canonical_keypoints(size), size)
    on_mouth = masks["mouth"].astype(np.float32)
    shares = region_shares(on_mouth, masks)
    assert shares["mouth"] == pytest.approx(1.0) and shares["elsewhere"] == pytest.approx(0.0)
    uniform = region_shares(np.ones((4, 4)), masks)
    assert sum(uniform.values()) == pytest.approx(1.0)
    assert uniform["eyes"] == pytest.approx(masks["eyes"].mean(), abs=1e-6)
    assert region_shares(np.zeros((4, 4)), masks) == dict.fromkeys([*REGIONS, "elsewhere"], 0.0)
    maps = np.stack([on_mouth, masks["eyes"].astype(np.float32), on_mouth])
    table = region_table(maps, np.array([0, 1, 0]), ["happiness", "sadness"], size)
    assert table["per_class"]["happiness"]["mouth"] == pytest.approx(1.0)
    assert table["per_class"]["sadness"]["eyes"] == pytest.approx(1.0)
    assert "| happiness | 2 |" in table_markdown(table)


def test_keypoints_are_followed_into_the_crop():
    image = np.zeros((200, 240, 3), np.uint8)
    marks = {"left_eye": (100.0, 80.0), "right_eye": (140.0, 86.0), "mouth": (117.0, 130.0)}
    for x, y in marks.values():
        image[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2] = 255
    face = Face(box=(80, 50, 80, 100), score=0.9, landmarks=marks)
    for align, level in ((False, False), (True, False), (True, True)):
        crop = crop_face(image, face, 64, align=align, level=level)[..., 0].astype(float)
        for name, (x, y) in keypoints_in_crop(face, 64, align=align, level=level).items():
            r, c = int(round(y)), int(round(x))
            assert crop[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].max() > 100, (align, level, name)
    levelled = keypoints_in_crop(face, 64, align=True, level=True)
    assert levelled["left_eye"][1] == pytest.approx(levelled["right_eye"][1], abs=1e-6)
    kept = keypoints_in_crop(face, 64, align=True)  # the default keeps the head's tilt: 6 px over 40 in the image
    assert (kept["right_eye"][1] - kept["left_eye"][1]) / (kept["right_eye"][0] - kept["left_eye"][0]) == \
        pytest.approx(6 / 40, abs=1e-6)


def test_the_faithfulness_report_has_both_random_baselines_blank_counts_and_a_verdict():
    from fer_keras.explain.faithfulness import faithfulness_report, report_table

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 255, (12, 16, 16, 1)).astype(np.float32)
    labels = np.repeat([0, 1], 6)
    weights = rng.random((16, 16))

    def predict(x):  # class 0's probability rests on the bright pixels where "weights" is high
        score = (x[..., 0] * weights).mean((1, 2)) / 255
        return np.stack([score, 1 - score], 1)

    def explain_fn(method, x, ids):
        return np.stack([weights] * len(x)) if method == "true" else np.zeros((len(x), 4, 4))

    report = faithfulness_report(predict, explain_fn, faces, labels, ["a", "b"], ["true", "blank"], steps=8)
    assert {"random@16x16", "random@4x4"} <= set(report["methods"])
    assert report["methods"]["blank"]["blank_maps"] == 12
    assert report["methods"]["blank"]["per_class"]["a"]["blank_maps"] == 6
    assert report["methods"]["true"]["blank_maps"] == 0
    assert "| blank |" in report_table(report) and "blank maps" in report_table(report)


def test_quantus_agrees_with_our_deletion_curves():
    pytest.importorskip("quantus", reason="Quantus is installed by hand (see fer_keras/explain/crosscheck.py)")
    from fer_keras.explain.crosscheck import compare_with_quantus

    model = build_model("gimefive", width=1 / 8)
    faces = np.random.default_rng(2).integers(0, 255, (6, 64, 64, 1)).astype(np.float32)

    def predict(x):
        return np.asarray(model.predict(x, verbose=0)["probabilities"])

    maps = {"random@8x8": np.random.default_rng(3).random((6, 8, 8))}
    result = compare_with_quantus(model, predict, faces, maps, predict(faces).argmax(1), steps=16)
    assert abs(result["random@8x8"]["ours"] - result["random@8x8"]["quantus"]) < 0.02
