"""Raw features -> model-ready tensors, as Keras layers, so the same graph runs in tf.data
during training and inside the exported SavedModel at serving time.

The preprocessor holds every lookup (vocabularies from the training split, genre splitting,
movie id -> dense-table row). The network behind it sees only integer indices, multi-hot
genres and row numbers, so it can be XLA-compiled (hash tables cannot).
"""

import keras
import numpy as np
import tensorflow as tf

from deepmix_tf.data import schema
from deepmix_tf.data.movielens import GENRES

MOVIE_ROW = "movie_row"
# The preprocessing sub-model's name: the export finds it by this name in a full model.
PREPROCESSOR = "preprocessor"


@keras.saving.register_keras_serializable(package="deepmix_tf")
class GenreMultiHot(keras.layers.Layer):
    """'|'-joined genre names -> float multi-hot vector over a fixed genre list.

    Unknown names are ignored; an empty string gives all zeros. Each name is looked up once
    in a hash table (not compared with every genre), since this layer runs in every served
    request.

    Args:
        genres: list of str. The genre names, in output order. Defaults to the 18 of ML-1M.

    Example:
    >>> GenreMultiHot(["Comedy", "Drama"])(tf.constant(["Drama", "Comedy|Drama"]))
    """

    def __init__(self, genres=GENRES, **kwargs):
        super().__init__(**kwargs)
        self.genres = list(genres)
        # Index 0 is every unknown name, 1..n the genres in order.
        self.lookup = keras.layers.StringLookup(vocabulary=self.genres, num_oov_indices=1,
                                                output_mode="int", name="genre_lookup")

    def build(self, input_shape):
        self.lookup.build((None,))  # it reads the flat list of names, of any length

    def call(self, inputs):
        names = tf.strings.split(inputs, "|")
        # Unknown names (index 0) become -1, which one_hot maps to a row of zeros.
        hot = tf.one_hot(self.lookup(names.values) - 1, len(self.genres),
                         dtype=self.compute_dtype)
        counts = tf.math.unsorted_segment_sum(hot, names.value_rowids(), tf.shape(inputs)[0])
        return tf.minimum(counts, 1)  # a name given twice still counts once

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.genres))

    def get_config(self):
        return {**super().get_config(), "genres": self.genres}


@keras.saving.register_keras_serializable(package="deepmix_tf")
class StringPrefix(keras.layers.Layer):
    """Keeps the first `length` characters (bytes) of each string.

    Args:
        length: int. How many leading characters to keep.
    """

    def __init__(self, length, **kwargs):
        super().__init__(**kwargs)
        self.length = length

    def call(self, inputs):
        return tf.strings.substr(inputs, 0, self.length)

    def get_config(self):
        return {**super().get_config(), "length": self.length}


def raw_inputs(task, feature_names):
    """Keras Input tensors of the raw features, named and typed as in the schema."""
    dtypes = {"int64": "int64", "string": "string", "float32": "float32"}
    return {f.name: keras.Input(shape=(), dtype=dtypes[f.dtype], name=f.name)
            for f in schema.features(task) if f.name in feature_names}


def build_preprocessor(task, feature_names, vocabularies, movie_ids=None):
    """The preprocessing model: raw feature dict -> dict of model-ready tensors.

    Args:
        task: "rating" or "genre".
        feature_names: the raw features to use (names from `schema.features(task)`).
        vocabularies: dict feature name -> vocabulary list (from the training split).
        movie_ids: int array or None. Ids of the rows of the dense per-movie table; when
            given, `movie_id` is also mapped to `movie_row` (0 = unknown movie).

    Returns:
        A `keras.Model` whose outputs are: each categorical feature as int32 index
        (0 = out of vocabulary), `genres` as float32 multi-hot, and `movie_row`.
    """
    inputs = raw_inputs(task, set(feature_names) | ({"movie_id"} if movie_ids is not None
                                                    else set()))
    outputs = {}
    for f in schema.features(task):
        if f.name not in feature_names:
            continue
        x = inputs[f.name]
        if f.kind == schema.CATEGORICAL:
            if f.prefix_length:
                x = StringPrefix(f.prefix_length, name=f"{f.name}_prefix")(x)
            lookup_cls = (keras.layers.StringLookup if f.dtype == "string"
                          else keras.layers.IntegerLookup)
            lookup = lookup_cls(vocabulary=vocabularies[f.name], num_oov_indices=1,
                                output_mode="int", name=f"{f.name}_lookup")
            outputs[f.name] = keras.ops.cast(lookup(x), "int32")
        elif f.kind == schema.MULTI_HOT:
            outputs[f.name] = GenreMultiHot(name=f"{f.name}_multi_hot")(x)
        elif f.kind == schema.NUMERIC:
            outputs[f.name] = keras.ops.cast(x, "float32")
    if movie_ids is not None:
        lookup = keras.layers.IntegerLookup(
            vocabulary=np.asarray(movie_ids, dtype=np.int64), num_oov_indices=1,
            output_mode="int", name="movie_row_lookup")
        outputs[MOVIE_ROW] = keras.ops.cast(lookup(inputs["movie_id"]), "int32")
    return keras.Model(inputs, outputs, name=PREPROCESSOR)

