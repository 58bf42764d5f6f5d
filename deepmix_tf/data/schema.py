"""The declared features of each task: names, dtypes and how a model uses them.

The same names and dtypes are used in the TFRecords, in the Keras model inputs and in the
serving signature, so a serving client sends exactly the raw values listed here.
"""

import dataclasses

from deepmix_tf.data.movielens import GENRES

TASKS = ("rating", "genre")

# How a model uses a feature:
CATEGORICAL = "categorical"  # vocabulary lookup (train split only, one OOV bucket) + embedding
MULTI_HOT = "multi_hot"      # '|'-joined genre names, split and multi-hot encoded in the graph
KEY = "key"                  # a movie id used only to look up dense per-movie tables
NUMERIC = "numeric"          # a raw number


@dataclasses.dataclass(frozen=True)
class Feature:
    """One raw input feature.

    Args:
        name: str. Feature name in TFRecords, model inputs and the serving signature.
        dtype: str. "int64", "string" or "float32".
        kind: str. One of CATEGORICAL, MULTI_HOT, KEY, NUMERIC.
        doc: str. What the value is.
        enabled: bool. Whether models use it by default.
        prefix_length: int or None. For strings: only this many leading characters are used.
        missing: the value that means "unknown" (never put in a vocabulary, so it maps to
            the OOV bucket), or None when every value is a real one.
    """

    name: str
    dtype: str
    kind: str
    doc: str
    enabled: bool = True
    prefix_length: int = None
    missing: object = None


_USER = (
    Feature("user_id", "int64", CATEGORICAL, "MovieLens user id"),
    Feature("gender", "string", CATEGORICAL, "'M' or 'F'"),
    Feature("age", "int64", CATEGORICAL, "ML-1M age group: 1, 18, 25, 35, 45, 50 or 56"),
    Feature("occupation", "int64", CATEGORICAL, "ML-1M occupation code, 0-20"),
    Feature("zip_code", "string", CATEGORICAL, "zip code; only its first 3 characters are used",
            prefix_length=3),
)
_MOVIE = (
    Feature("year", "int64", CATEGORICAL, "release year; 0 when unknown (maps to OOV)",
            missing=0),
    Feature("certificate", "string", CATEGORICAL,
            "age certificate (G, PG, PG-13, R, ...); '' when unknown (maps to OOV)", missing=""),
)

RATING_FEATURES = _USER + (
    Feature("movie_id", "int64", CATEGORICAL, "MovieLens movie id"),
) + _MOVIE + (
    Feature("genres", "string", MULTI_HOT, "'|'-joined genre names, e.g. 'Comedy|Drama'"),
    # Off by default: in the shared copy of ML-1M the missing timestamps correlate with the label.
    Feature("timestamp", "int64", NUMERIC, "seconds since the epoch; 0 when missing",
            enabled=False),
    Feature("has_timestamp", "int64", NUMERIC, "1 when the timestamp is known, else 0",
            enabled=False),
)

# The genre task never sees the Genre column: it is the label.
GENRE_FEATURES = (
    Feature("movie_id", "int64", KEY, "MovieLens movie id (looks up per-movie dense tables)"),
) + _MOVIE

FEATURES = {"rating": RATING_FEATURES, "genre": GENRE_FEATURES}


@dataclasses.dataclass(frozen=True)
class Label:
    name: str
    dtype: str
    shape: tuple
    doc: str


LABELS = {
    "rating": Label("rating", "float32", (), "the rating, 1-5"),
    "genre": Label("genres", "float32", (len(GENRES),),
                   f"multi-hot genres in the order {list(GENRES)}"),
}


def features(task):
    if task not in FEATURES:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    return FEATURES[task]


def vocabulary_values(feature, values):
    """The values a vocabulary is built from: prefixes where declared, missing values dropped."""
    if feature.prefix_length:
        values = [v[:feature.prefix_length] for v in values]
    return sorted({v for v in values if feature.missing is None or v != feature.missing})


def to_dict(task):
    """The schema of a task as plain data (for metadata JSON files)."""
    return {
        "features": [dataclasses.asdict(f) for f in features(task)],
        "label": dataclasses.asdict(LABELS[task]),
    }
