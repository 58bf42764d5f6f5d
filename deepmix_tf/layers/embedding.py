"""Embedding tables whose training step touches only the rows of the batch.

Keras' `Embedding` gathers from the table read as a whole tensor; an update of the table in
place then has to copy all of it while that read is alive, so a step costs time in
proportion to the table's rows. These layers gather from the variable itself (a resource
gather), their gradient is a `tf.IndexedSlices` of the rows looked up, and `SparseSGD`
applies it as a scatter: step time follows the batch, not the table (BUILD.md, "Scale").
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="deepmix_tf")
class SparseEmbedding(keras.layers.Embedding):
    """`keras.layers.Embedding` with a sparse gradient (see the module docstring)."""

    def call(self, inputs):
        return tf.gather(self.embeddings.value, tf.cast(inputs, "int32")
                         if inputs.dtype != tf.int64 else inputs)


@keras.saving.register_keras_serializable(package="deepmix_tf")
class BagEmbedding(SparseEmbedding):
    """Pooled embeddings of bags of ids: DLRM's multi-hot lookups (an EmbeddingBag).

    Args:
        input_dim: int. Table rows.
        output_dim: int. Embedding width.
        pooling: "sum" or "mean" of the bag's embeddings (an empty bag gives zeros).

    Call arguments:
        inputs: int (batch, k) row ids; -1 is padding (no item).

    Example:
    >>> BagEmbedding(10, 4, pooling="mean")(tf.constant([[1, 2, -1], [-1, -1, -1]]))
    """

    def __init__(self, input_dim, output_dim, pooling="sum", **kwargs):
        super().__init__(input_dim, output_dim, **kwargs)
        if pooling not in ("sum", "mean"):
            raise ValueError(f"pooling must be 'sum' or 'mean', got {pooling!r}")
        self.pooling = pooling

    def call(self, inputs):
        present = inputs >= 0
        vectors = super().call(tf.where(present, inputs, tf.zeros_like(inputs)))
        weights = tf.cast(present, vectors.dtype)
        pooled = tf.einsum("bk,bkd->bd", weights, vectors)
        if self.pooling == "mean":
            pooled = pooled / tf.maximum(tf.reduce_sum(weights, 1, keepdims=True), 1.0)
        return pooled

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "pooling": self.pooling}


@keras.saving.register_keras_serializable(package="deepmix_tf")
class SparseSGD(keras.optimizers.SGD):
    """`keras.optimizers.SGD` (no momentum) that applies `tf.IndexedSlices` gradients as
    scatters, so embedding rows outside the batch are not touched (the DLRM paper's
    optimizer). Dense gradients take SGD's own update."""

    def update_step(self, gradient, variable, learning_rate):
        if isinstance(gradient, tf.IndexedSlices) and not self.momentum:
            lr = tf.cast(learning_rate, variable.dtype)
            self.assign_sub(variable, tf.IndexedSlices(
                tf.cast(gradient.values, variable.dtype) * lr, gradient.indices,
                gradient.dense_shape))
            return
        super().update_step(gradient, variable, learning_rate)
