"""One emotion taxonomy, and every dataset's own labels mapped into it.

The canonical emotions are named in lower case. A :class:`Taxonomy` is an
ordered view over some of them: ``six`` (GiMeFive's order, the default) or
``seven`` (the six plus neutral). Dataset labels are first turned into a
canonical name with :func:`canonical_emotion` or a dataset's id table, then
into a class index with :meth:`Taxonomy.index`, which returns None for an
emotion outside the view (the caller drops and counts it).
"""

from __future__ import annotations

from dataclasses import dataclass

EMOTIONS = ("happiness", "surprise", "sadness", "anger", "disgust", "fear", "neutral", "contempt")

# Spellings found in public datasets' folder names and label files.
_SYNONYMS = {
    "happy": "happiness", "happiness": "happiness", "joy": "happiness",
    "surprise": "surprise", "surprised": "surprise",
    "sad": "sadness", "sadness": "sadness",
    "angry": "anger", "anger": "anger",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear",
    "neutral": "neutral",
    "contempt": "contempt",
}

# FER2013 CSV emotion ids (and the Kaggle folder names map through _SYNONYMS).
FER2013_IDS = {0: "anger", 1: "disgust", 2: "fear", 3: "happiness", 4: "sadness", 5: "surprise", 6: "neutral"}
# RAF-DB basic label ids in list_patition_label.txt and DATASET/{train,test}/<id>/.
RAFDB_IDS = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}
# AffectNet's numeric expression ids (the official annotation and numbered re-packagings).
AFFECTNET_IDS = {0: "neutral", 1: "happiness", 2: "sadness", 3: "surprise", 4: "fear", 5: "disgust", 6: "anger",
                 7: "contempt"}
# FER+ label.csv vote columns after the image name and face box.
FERPLUS_VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                        "unknown", "not_face")


def canonical_emotion(label: str) -> str | None:
    """Maps a dataset's emotion spelling ("Happy", "angry", "sadness") to a canonical name, or None."""
    return _SYNONYMS.get(label.strip().lower())


@dataclass(frozen=True)
class Taxonomy:
    """An ordered list of emotions that a model classifies."""

    name: str
    classes: tuple[str, ...]

    def index(self, emotion: str | None) -> int | None:
        """Class index of a canonical emotion, or None when outside this view."""
        try:
            return self.classes.index(emotion)
        except ValueError:
            return None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


SIX = Taxonomy("six", ("happiness", "surprise", "sadness", "anger", "disgust", "fear"))
SEVEN = Taxonomy("seven", SIX.classes + ("neutral",))
TAXONOMIES = {t.name: t for t in (SIX, SEVEN)}


def get_taxonomy(name: str) -> Taxonomy:
    try:
        return TAXONOMIES[name]
    except KeyError:
        raise ValueError(f"unknown class view {name!r}; choose one of: {', '.join(TAXONOMIES)}") from None


def infer_taxonomy(model, override: str | None = None) -> Taxonomy:
    """The class view of a model: ``override`` when given, else the class names it carries (a
    SavedModel's labels), else the one view with as many classes as its ``probabilities`` output.

    Raises ValueError when none fits (pass the class view by name)."""
    if override:
        return get_taxonomy(override)
    names = getattr(model, "class_names", None)
    if names:
        for t in TAXONOMIES.values():
            if list(t.classes) == list(names):
                return t
    if hasattr(model, "get_layer"):  # a Keras model
        k = model.get_layer("probabilities").output.shape[-1]
    else:
        k = len(names) if names else None
    for t in TAXONOMIES.values():
        if t.num_classes == k:
            return t
    raise ValueError(f"cannot tell the class view of a model with {k} outputs; pass --classes")
