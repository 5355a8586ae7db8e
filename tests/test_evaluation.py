import numpy as np

from fer_keras.data.faces import load_faces
from fer_keras.data.synthetic import synthetic_records
from fer_keras.data.taxonomy import SEVEN, SIX
from fer_keras.evaluation import (
    classification_report,
    evaluate_faces,
    unseen_class_report,
    wilson_interval,
)


def test_classification_report_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2])
    r = classification_report(labels, predicted, ("a", "b", "c"))
    assert r["accuracy"] == 4 / 6
    assert r["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert r["per_class"]["a"]["recall"] == 2 / 3 and r["per_class"]["a"]["precision"] == 1.0
    assert r["per_class"]["b"]["recall"] == 0.5 and r["per_class"]["b"]["precision"] == 0.5
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 * 1 / 1.5]
    assert np.isclose(r["macro_f1"], np.mean(f1))


def test_per_class_recall_comes_with_its_95_percent_interval_and_a_flag_for_too_few_faces():
    # Wilson's interval by hand for 9 of 16 (FER+'s test disgust): 0.332 to 0.769
    low, high = wilson_interval(9, 16)
    assert np.isclose(low, 0.3319, atol=1e-3) and np.isclose(high, 0.7693, atol=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0  # stays inside [0, 1]
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # a large class is told, a small one flagged
    labels = np.array([0] * 900 + [1] * 16)
    predicted = np.array([0] * 810 + [1] * 90 + [1] * 9 + [0] * 7)
    r = classification_report(labels, predicted, ("big", "small"))
    big, small = r["per_class"]["big"], r["per_class"]["small"]
    assert big["recall_ci95"][0] < big["recall"] == 0.9 < big["recall_ci95"][1] and not big["too_few_to_tell"]
    assert np.allclose(small["recall_ci95"], [low, high]) and small["too_few_to_tell"]


class _Oracle:
    """A stand-in model that answers from a lookup of the true labels, wrong on chosen faces."""

    def __init__(self, faces, wrong):
        self.lookup = {f.tobytes(): (y + 1) % 6 if i in wrong else y
                       for i, (f, y) in enumerate(zip(faces.images, faces.labels))}

    def predict(self, images, batch_size=128, verbose=0):
        labels = [self.lookup[im.astype(np.uint8).tobytes()] for im in images]
        return {"probabilities": np.eye(6)[labels]}


def test_subsets_and_leak_exclusion():
    records = synthetic_records(per_class=2, size=32, seed=0, splits=(("test", 1.0),))
    for i, r in enumerate(records):
        r.subset = "PublicTest" if i % 2 else "PrivateTest"
    faces = load_faces(records, SIX, 32, progress=False)[0]
    leaked = np.zeros(len(faces), bool)
    leaked[[0, 1]] = True
    report = evaluate_faces(_Oracle(faces, wrong={0, 1, 2}), faces, leaked=leaked)
    assert report["accuracy"] == 9 / 12
    assert report["accuracy_without_leaked"] == 9 / 10 and report["leaked"] == 2
    assert report["by_subset"]["PrivateTest"]["accuracy"] == 4 / 6  # faces 0 and 2 are even
    assert report["by_subset"]["PublicTest"]["accuracy"] == 5 / 6


class _Constant:
    """A stand-in six-class model: every face gets the same probabilities."""

    def __init__(self, probs):
        self.probs = np.asarray(probs, np.float32)

    def predict(self, images, batch_size=128, verbose=0):
        return {"probabilities": np.tile(self.probs, (len(images), 1))}


def test_unseen_class_report_follows_the_faces_of_classes_the_model_lacks():
    faces = load_faces(synthetic_records(per_class=3, taxonomy=SEVEN, size=32, seed=0), SEVEN, 32, progress=False)[0]
    probs = np.full(6, 0.08)
    probs[SIX.classes.index("sadness")] = 0.6
    report = unseen_class_report(_Constant(probs), faces, SIX.classes)
    assert set(report) == {"neutral"}  # the six known classes are not summarised
    neutral = report["neutral"]
    assert neutral["n"] == 3 and np.isclose(neutral["mean_top_probability"], 0.6)
    assert neutral["predicted"]["sadness"] == 1.0 and sum(neutral["predicted"].values()) == 1.0
