import numpy as np

from fer_keras.data.synthetic import EXPRESSIONS, draw_face, main, synthetic_records
from fer_keras.data.taxonomy import SEVEN, SIX


def test_deterministic_and_shaped():
    a = synthetic_records(per_class=3, size=48, seed=7)
    b = synthetic_records(per_class=3, size=48, seed=7)
    assert all(np.array_equal(x.pixels, y.pixels) for x, y in zip(a, b))
    assert a[0].pixels.shape == (48, 48) and a[0].pixels.dtype == np.uint8
    assert len(synthetic_records(per_class=2, taxonomy=SEVEN)) == 14


def test_expressions_differ_more_between_classes_than_within():
    # Without pose or noise variation the class means must still be distinct pictures.
    means = {e: np.mean([draw_face(e, np.random.default_rng(i)).astype(float) for i in range(30)], axis=0)
             for e in EXPRESSIONS}
    names = list(means)
    gaps = [np.abs(means[a] - means[b]).mean() for i, a in enumerate(names) for b in names[i + 1:]]
    assert min(gaps) > 1.0


def test_cli_writes_class_folders(tmp_path):
    main(["--out", str(tmp_path), "--per-class", "2", "--size", "32"])
    files = sorted(tmp_path.rglob("*.png"))
    assert len(files) == 12 and {f.parent.name for f in files} == set(SIX.classes)
