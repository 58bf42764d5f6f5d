"""AutoDis: learned embeddings of numeric fields (Guo et al., KDD 2021, "An Embedding
Learning Framework for Numerical Features in CTR Prediction")."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="deepmix_tf")
class AutoDis(keras.layers.Layer):
    """An embedding of each numeric field by soft discretisation over meta-embeddings:

        h     = LeakyReLU(w x)                  w: (H,)     one weight per bucket
        h~    = W h + alpha h                   W: (H, H),  alpha: the skip factor
        p     = softmax(h~ / temperature)       the value's soft bucket
        e     = sum_k p_k ME_k                  ME: (H, d)  the field's meta-embeddings

    per field, with parameters of its own. Unlike a standardised input (one number a network
    can only scale) or hand-made equal-frequency buckets (hard edges, a table row per
    bucket), the buckets and their edges are learned end to end, so an effect confined to a
    band of values is one meta-embedding away.

    Args:
        buckets: int. Meta-embeddings per field (`H`).
        output_dim: int. Embedding width (`d`).
        temperature: float > 0. Of the softmax: lower is closer to hard buckets.
        skip: float. `alpha`, the weight of the skip term.
        embeddings_regularizer: regularizer of the meta-embeddings.

    Call arguments:
        inputs: float (batch, fields) numeric values (standardised).

    Returns:
        (batch, fields, output_dim).

    Example:
    >>> AutoDis(buckets=8, output_dim=4)(keras.random.normal((5, 3))).shape
    (5, 3, 4)
    """

    def __init__(self, buckets=16, output_dim=16, temperature=1.0, skip=0.1,
                 embeddings_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(buckets, int) or buckets < 2:
            raise ValueError(f"AutoDis needs at least 2 buckets, got {buckets!r}")
        if not temperature > 0:
            raise ValueError(f"AutoDis temperature must be > 0, got {temperature!r}")
        self.buckets, self.output_dim = buckets, output_dim
        self.temperature, self.skip = float(temperature), float(skip)
        self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)

    def build(self, input_shape):
        fields, h = int(input_shape[-1]), self.buckets
        self.bucket_weights = self.add_weight(shape=(fields, h), initializer="glorot_uniform",
                                              name="bucket_weights")
        self.mixing = self.add_weight(shape=(fields, h, h), initializer="glorot_uniform",
                                      name="mixing")
        self.meta_embeddings = self.add_weight(
            shape=(fields, h, self.output_dim), initializer="uniform",
            regularizer=self.embeddings_regularizer, name="meta_embeddings")

    def bucket_probabilities(self, inputs):
        """(batch, fields, buckets): each value's soft bucket `p`."""
        x = ops.cast(inputs, self.compute_dtype)
        h = ops.leaky_relu(ops.expand_dims(x, -1) * self.bucket_weights)
        mixed = ops.einsum("bfh,fhk->bfk", h, self.mixing) + self.skip * h
        return ops.softmax(mixed / self.temperature, axis=-1)

    def call(self, inputs):
        return ops.einsum("bfk,fkd->bfd", self.bucket_probabilities(inputs),
                          self.meta_embeddings)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1], self.output_dim)

    def get_config(self):
        return {**super().get_config(), "buckets": self.buckets, "output_dim": self.output_dim,
                "temperature": self.temperature, "skip": self.skip,
                "embeddings_regularizer": keras.regularizers.serialize(
                    self.embeddings_regularizer)}
