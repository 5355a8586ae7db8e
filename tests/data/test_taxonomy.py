import pytest

from fer_keras.data.taxonomy import (
    AFFECTNET_IDS,
    FER2013_IDS,
    RAFDB_IDS,
    SEVEN,
    SIX,
    canonical_emotion,
    get_taxonomy,
)


def test_six_class_order_is_gimefives():
    assert SIX.classes == ("happiness", "surprise", "sadness", "anger", "disgust", "fear")
    assert SEVEN.classes == SIX.classes + ("neutral",)


def test_outside_the_view_is_none():
    assert SIX.index("neutral") is None
    assert SEVEN.index("neutral") == 6
    assert SEVEN.index("contempt") is None


@pytest.mark.parametrize("spelling,emotion", [
    ("Happy", "happiness"), ("angry", "anger"), ("sad", "sadness"), ("SURPRISE", "surprise"),
    ("fear", "fear"), ("disgust", "disgust"), ("neutral", "neutral"), ("contempt", "contempt"), ("banana", None),
])
def test_dataset_spellings(spelling, emotion):
    assert canonical_emotion(spelling) == emotion


def test_dataset_id_tables():
    assert FER2013_IDS[3] == "happiness" and FER2013_IDS[0] == "anger" and FER2013_IDS[6] == "neutral"
    assert RAFDB_IDS[1] == "surprise" and RAFDB_IDS[4] == "happiness" and RAFDB_IDS[7] == "neutral"
    assert AFFECTNET_IDS[0] == "neutral" and AFFECTNET_IDS[7] == "contempt"


def test_unknown_view():
    with pytest.raises(ValueError, match="unknown class view 'eight'"):
        get_taxonomy("eight")
