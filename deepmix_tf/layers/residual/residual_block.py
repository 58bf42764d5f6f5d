"""ResidualBlock: DeepMix's configurable DNN block with a skip connection."""

import keras

from deepmix_tf.layers.dropout import Dropout


@keras.saving.register_keras_serializable(package="deepmix_tf")
class ResidualBlock(keras.layers.Layer):
    """A multi-layer perceptron with a skip connection, in place of Deep Crossing's fixed
    two-layer residual unit:

        h_0 = x
        h_j = dropout(act(norm(W_j h_{j-1} + b_j)))       for j = 1..depth
        y   = x + W_out h_depth + b_out

    The hidden layers are `round(width_multiplier * d)` wide, `d` the input width; the last
    projection maps back to `d` so the skip connection adds like for like. A projection back
    to `d` (not an activation) ends the block, so the block starts close to the identity and
    stacks deeply.

    Args:
        width_multiplier: float. Hidden width as a multiple of the input width.
            Defaults to 2.0.
        depth: int. Number of hidden layers. Defaults to 1.
        normalization: "layer", "batch" or None. Normalisation of each hidden layer, applied
            before its activation. Defaults to "layer".
        dropout: float. Dropout rate after each hidden activation. Defaults to 0.
        activation: str or callable. Hidden activation. Defaults to "relu".
        kernel_initializer: initializer of the kernels. Defaults to "glorot_uniform".
        kernel_regularizer: regularizer of the kernels. Defaults to None.

    Example:
    >>> ResidualBlock(width_multiplier=2.0, depth=2, dropout=0.1)(keras.ops.ones((4, 10))).shape
    (4, 10)
    """

    def __init__(self, width_multiplier=2.0, depth=1, normalization="layer", dropout=0.0,
                 activation="relu", kernel_initializer="glorot_uniform",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if normalization not in ("layer", "batch", None):
            raise ValueError("ResidualBlock: normalization must be 'layer', 'batch' or None, "
                             f"got {normalization!r}")
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"ResidualBlock: depth must be a positive int, got {depth!r}")
        if width_multiplier <= 0:
            raise ValueError("ResidualBlock: width_multiplier must be > 0, "
                             f"got {width_multiplier!r}")
        self.width_multiplier, self.depth = width_multiplier, depth
        self.normalization, self.dropout = normalization, dropout
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def _dense(self, units, name):
        return keras.layers.Dense(
            units, kernel_initializer=self.kernel_initializer.__class__.from_config(
                self.kernel_initializer.get_config()),
            kernel_regularizer=self.kernel_regularizer, dtype=self.dtype_policy, name=name)

    def build(self, input_shape):
        d = input_shape[-1]
        width = max(1, int(round(self.width_multiplier * d)))
        self.hidden, self.norms, self.dropouts = [], [], []
        shape = tuple(input_shape)
        for j in range(self.depth):
            dense = self._dense(width, f"hidden_{j}")
            dense.build(shape)
            shape = shape[:-1] + (width,)
            self.hidden.append(dense)
            if self.normalization == "layer":
                norm = keras.layers.LayerNormalization(name=f"layer_norm_{j}",
                                                       dtype=self.dtype_policy)
            elif self.normalization == "batch":
                norm = keras.layers.BatchNormalization(name=f"batch_norm_{j}",
                                                       dtype=self.dtype_policy)
            else:
                norm = None
            if norm is not None:
                norm.build(shape)
            self.norms.append(norm)
            self.dropouts.append(Dropout(self.dropout, name=f"dropout_{j}",
                                          dtype=self.dtype_policy))
        self.projection = self._dense(d, "projection")
        self.projection.build(shape)

    def call(self, inputs, training=False):
        h = inputs
        for dense, norm, dropout in zip(self.hidden, self.norms, self.dropouts):
            h = dense(h)
            if norm is not None:
                h = norm(h, training=training)
            h = dropout(self.activation(h), training=training)
        return inputs + self.projection(h)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "width_multiplier": self.width_multiplier,
            "depth": self.depth,
            "normalization": self.normalization,
            "dropout": self.dropout,
            "activation": keras.activations.serialize(self.activation),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
        }
