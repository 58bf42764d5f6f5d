"""Deep Crossing's embedding and stacking layers, shared by DeepMix and its baselines; and the
scoring heads."""

import keras
import numpy as np

from deepmix_tf.data import schema
from deepmix_tf.layers.dropout import Dropout
from deepmix_tf.models.preprocessing import MOVIE_ROW


@keras.saving.register_keras_serializable(package="deepmix_tf")
class DenseTable(keras.layers.Layer):
    """Row lookup in a fixed (non-trainable) table; row 0 is the all-zeros unknown row.

    Args:
        rows: int. Table rows, including row 0.
        dim: int. Row width.
    """

    def __init__(self, rows, dim, **kwargs):
        super().__init__(**kwargs)
        self.rows, self.dim = rows, dim

    def build(self, input_shape):
        self.table = self.add_weight(shape=(self.rows, self.dim), initializer="zeros",
                                     trainable=False, name="table")

    def call(self, index):
        return keras.ops.take(self.table, index, axis=0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.dim,)

    def get_config(self):
        return {**super().get_config(), "rows": self.rows, "dim": self.dim}


@keras.saving.register_keras_serializable(package="deepmix_tf")
class RatingHead(keras.layers.Layer):
    """`y = mean + w^T x + b`; at inference clipped to the rating scale [low, high].

    Training sees the unclipped value so that its gradient never vanishes.

    Args:
        mean: float. Training mean rating, the starting point of the prediction.
        low, high: floats. The rating scale.
    """

    def __init__(self, mean=3.5, low=1.0, high=5.0, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.low, self.high = mean, low, high
        self.dense = keras.layers.Dense(1, name="score", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, x, training=False):
        y = self.mean + keras.ops.squeeze(self.dense(x), -1)
        return y if training else keras.ops.clip(y, self.low, self.high)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "low": self.low, "high": self.high}


def model_inputs(preprocessor):
    """Keras Inputs matching the preprocessor's outputs (the network's inputs)."""
    inputs = {}
    for name, tensor in preprocessor.output.items():
        inputs[name] = keras.Input(shape=tensor.shape[1:], dtype=tensor.dtype, name=name)
    return inputs


def embed(inputs, task, vocabularies, config, table=None):
    """Embedding layer of Deep Crossing: one vector per feature.

    Returns:
        (embeddings: list of (batch, embedding_dim) tensors, one per categorical feature and
        one for the multi-hot genres; dense: (batch, d) tensor of numeric features and dense
        table rows, or None).
    """
    regularizer = l2_regularizer(config)
    embeddings, dense = [], []
    for f in schema.features(task):
        if f.name not in inputs:
            continue
        x = inputs[f.name]
        if f.kind == schema.CATEGORICAL:
            layer = keras.layers.Embedding(len(vocabularies[f.name]) + 1, config.embedding_dim,
                                           embeddings_regularizer=regularizer,
                                           name=f"{f.name}_embedding")
            embeddings.append(layer(x))
        elif f.kind == schema.MULTI_HOT:
            # A linear map of a multi-hot vector is the sum of its genres' embeddings.
            embeddings.append(keras.layers.Dense(
                config.embedding_dim, use_bias=False, kernel_regularizer=regularizer,
                name=f"{f.name}_embedding")(x))
        elif f.kind == schema.NUMERIC:
            dense.append(keras.ops.expand_dims(x, -1))
    if table is not None and MOVIE_ROW in inputs:
        layer = DenseTable(table.shape[0], table.shape[1], name="movie_table")
        dense.append(layer(inputs[MOVIE_ROW]))
        layer.set_weights([table])
    dense = (keras.layers.Concatenate(name="dense_features")(dense) if len(dense) > 1
             else dense[0] if dense else None)
    return embeddings, dense


def stack(embeddings, dense):
    """Stacking layer of Deep Crossing: all features side by side in one vector."""
    parts = embeddings + ([dense] if dense is not None else [])
    return keras.layers.Concatenate(name="stacking")(parts) if len(parts) > 1 else parts[0]


def mlp(x, units, config, name):
    for i, width in enumerate(units):
        x = keras.layers.Dense(width, activation=config.activation,
                               kernel_regularizer=l2_regularizer(config), name=f"{name}_{i}")(x)
        if config.dropout:
            x = Dropout(config.dropout, name=f"{name}_dropout_{i}")(x)
    return x


def l2_regularizer(config):
    """The configured L2 penalty, or None when `config.l2` is 0."""
    return keras.regularizers.L2(config.l2) if config.l2 else None


def head(x, task, config, rating_mean):
    """Scoring layer: one rating, or 18 genre logits."""
    if task == "rating":
        return RatingHead(mean=rating_mean, name="rating")(x)
    return keras.layers.Dense(18, name="genre_logits")(x)


def standardize(table):
    """Zero-mean unit-variance columns (constant columns stay 0), with a zero row 0 prepended."""
    table = np.asarray(table, dtype=np.float32)
    std = table.std(axis=0)
    table = (table - table.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return np.concatenate([np.zeros((1, table.shape[1]), np.float32), table]).astype(np.float32)
