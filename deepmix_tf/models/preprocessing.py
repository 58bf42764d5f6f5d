"""Raw features -> model-ready tensors, as Keras layers, so the same graph runs in tf.data
during training and inside the exported SavedModel at serving time.

The preprocessor holds every lookup (vocabularies from the training split, multi-hot
splitting, numeric transforms, key -> dense-table row). The network behind it sees only
integer indices, multi-hot vectors, floats and row numbers, so it can be XLA-compiled (hash
tables cannot).
"""

import keras
import numpy as np
import tensorflow as tf

# The preprocessing sub-model's name: the export finds it by this name in a full model.
PREPROCESSOR = "preprocessor"


@keras.saving.register_keras_serializable(package="deepmix_tf")
class MultiHot(keras.layers.Layer):
    """Separator-joined item names -> float multi-hot vector over a fixed vocabulary.

    With `num_oov_indices=0` unknown names are ignored; otherwise they mark the first
    `num_oov_indices` columns (hashed). An empty string gives all zeros; a name given twice
    counts once. Each name is looked up once in a hash table, since this layer runs in
    every served request.

    Args:
        vocabulary: list of str. The item names, in output order.
        separator: str. What joins the names.
        num_oov_indices: int. Columns for unknown names, before the vocabulary's.

    Example:
    >>> MultiHot(["Comedy", "Drama"])(tf.constant(["Drama", "Comedy|Drama"]))
    """

    def __init__(self, vocabulary, separator="|", num_oov_indices=0, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary = list(vocabulary)
        self.separator = separator
        self.num_oov_indices = num_oov_indices
        self.lookup = keras.layers.StringLookup(vocabulary=self.vocabulary,
                                                num_oov_indices=max(1, num_oov_indices),
                                                output_mode="int", name="item_lookup")

    @property
    def width(self):
        return len(self.vocabulary) + self.num_oov_indices

    def build(self, input_shape):
        self.lookup.build((None,))  # it reads the flat list of names, of any length

    def call(self, inputs):
        names = tf.strings.split(inputs, self.separator)
        # Empty items ("", "a||b") are no items, whatever the OOV setting.
        names = tf.ragged.boolean_mask(names, tf.strings.length(names) > 0)
        index = self.lookup(names.values)
        if not self.num_oov_indices:
            index = index - 1  # unknown names (index 0) become -1: a row of zeros
        hot = tf.one_hot(index, self.width, dtype=self.compute_dtype)
        counts = tf.math.unsorted_segment_sum(hot, names.value_rowids(), tf.shape(inputs)[0])
        return tf.minimum(counts, 1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.width)

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary,
                "separator": self.separator, "num_oov_indices": self.num_oov_indices}


@keras.saving.register_keras_serializable(package="deepmix_tf")
class NumericTransform(keras.layers.Layer):
    """A raw number -> float32 model input: clip, then `log1p` and/or standardisation with
    the training split's statistics (the steps a spec's numeric feature declares).

    Args:
        clip: [low, high] or None (null ends: unbounded).
        transform: list of "log1p", "standardize", applied in order.
        mean, std: the training statistics after clip and log1p.
    """

    def __init__(self, clip=None, transform=(), mean=0.0, std=1.0, **kwargs):
        super().__init__(**kwargs)
        self.clip = list(clip) if clip else None
        self.transform = list(transform)
        self.mean, self.std = float(mean), float(std)

    def call(self, x):
        x = tf.cast(x, "float32")
        if self.clip:
            low, high = self.clip
            x = tf.clip_by_value(x, -np.inf if low is None else low,
                                 np.inf if high is None else high)
        for step in self.transform:
            if step == "log1p":
                x = tf.math.log1p(x)
            elif step == "standardize":
                x = (x - self.mean) / (self.std if self.std > 0 else 1.0)
        return x

    def get_config(self):
        return {**super().get_config(), "clip": self.clip, "transform": self.transform,
                "mean": self.mean, "std": self.std}


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


@keras.saving.register_keras_serializable(package="deepmix_tf")
class IdentityIndex(keras.layers.Layer):
    """Integer ids that are their own rows: id i in [0, size) -> i + num_oov_indices; other
    ids -> 0 (the out-of-vocabulary row), or -1 (no item) without OOV rows; the padding -1
    of bags stays -1.

    Args:
        size: int. The ids' range.
        num_oov_indices: int. 0 or 1: rows before the ids' for unknown ids.
    """

    def __init__(self, size, num_oov_indices=1, **kwargs):
        super().__init__(**kwargs)
        self.size, self.num_oov_indices = int(size), int(num_oov_indices)

    def call(self, ids):
        ids = tf.cast(ids, "int64")
        known = (ids >= 0) & (ids < self.size)
        unknown = tf.where(ids == -1, tf.constant(-1, tf.int64),
                           tf.constant(0 if self.num_oov_indices else -1, tf.int64))
        return tf.cast(tf.where(known, ids + self.num_oov_indices, unknown), "int32")

    def get_config(self):
        return {**super().get_config(), "size": self.size,
                "num_oov_indices": self.num_oov_indices}


def row_input(table):
    """The name of the preprocessed input holding a key's row in dense table `table`."""
    return f"{table}_row"


def raw_inputs(meta, names):
    """Keras Input tensors of raw example columns, named and typed as in the build."""
    return {c["name"]: keras.Input(
        shape=(c["length"],) if c["dtype"] == "int64_list" else (),
        dtype="int64" if c["dtype"] == "int64_list" else c["dtype"], name=c["name"])
            for c in meta["columns"] if c["name"] in names}


def build_preprocessor(meta, feature_names, table_ids=None):
    """The preprocessing model: raw feature dict -> dict of model-ready tensors.

    Args:
        meta: a build's metadata (`tfrecords.read_metadata`): its features carry their
            vocabularies and statistics from the training split.
        feature_names: the features to use.
        table_ids: {dense table name: int array of its row ids} or None; each table's key
            is then also mapped to `<table>_row` (0 = unknown key).

    Returns:
        A `keras.Model` whose outputs are: each categorical feature as int32 index
        (0 .. num_oov_indices - 1 = out of vocabulary), each multi-hot feature as float32
        multi-hot, each numeric one as float32, and the dense tables' rows.
    """
    table_ids = table_ids or {}
    keys = {meta["dense_tables"][name]["key"] for name in table_ids}
    inputs = raw_inputs(meta, set(feature_names) | keys)
    outputs = {}
    for f in meta["features"]:
        if f["name"] not in feature_names:
            continue
        x = inputs[f["name"]]
        if f["type"] == "categorical":
            if f["prefix"]:
                x = StringPrefix(f["prefix"], name=f"{f['name']}_prefix")(x)
            if f["hash_buckets"]:
                index = keras.layers.Hashing(f["hash_buckets"], name=f"{f['name']}_hash")(x)
            elif f.get("identity"):
                index = IdentityIndex(f["identity"], f["num_oov_indices"],
                                      name=f"{f['name']}_identity")(x)
            else:
                lookup_cls = (keras.layers.StringLookup if f["dtype"] == "string"
                              else keras.layers.IntegerLookup)
                index = lookup_cls(vocabulary=f["vocabulary"],
                                   num_oov_indices=f["num_oov_indices"], output_mode="int",
                                   name=f"{f['name']}_lookup")(x)
            outputs[f["name"]] = keras.ops.cast(index, "int32")
        elif f["type"] == "multi_hot" and f["dtype"] == "int64_list":
            outputs[f["name"]] = IdentityIndex(f["identity"], f["num_oov_indices"],
                                               name=f"{f['name']}_identity")(x)
        elif f["type"] == "multi_hot":
            outputs[f["name"]] = MultiHot(f["vocabulary"], f["separator"],
                                          f["num_oov_indices"], name=f"{f['name']}_multi_hot")(x)
        elif f["type"] == "numeric":
            outputs[f["name"]] = NumericTransform(f["clip"], f["transform"], f["mean"], f["std"],
                                                  name=f"{f['name']}_numeric")(x)
    for name, ids in table_ids.items():
        lookup = keras.layers.IntegerLookup(
            vocabulary=np.asarray(ids, dtype=np.int64), num_oov_indices=1,
            output_mode="int", name=f"{name}_row_lookup")
        outputs[row_input(name)] = keras.ops.cast(lookup(inputs[meta["dense_tables"][name]["key"]]),
                                                  "int32")
    return keras.Model(inputs, outputs, name=PREPROCESSOR)
