"""The residual unit of Deep Crossing (Shan et al., KDD 2016)."""

import keras


@keras.saving.register_keras_serializable(package="deepmix_tf")
class DeepCrossingResidualUnit(keras.layers.Layer):
    """Deep Crossing's two-layer residual unit:

        y = ReLU(W_1 ReLU(W_0 x + b_0) + b_1 + x)

    `W_0` maps the input width `d` to `hidden_units`, `W_1` maps back to `d`.

    Args:
        hidden_units: int. Width of the inner layer.
        kernel_initializer: initializer of both kernels. Defaults to "glorot_uniform".
        kernel_regularizer: regularizer of both kernels. Defaults to None.

    Example:
    >>> DeepCrossingResidualUnit(hidden_units=32)(keras.ops.ones((4, 10))).shape
    (4, 10)
    """

    def __init__(self, hidden_units, kernel_initializer="glorot_uniform",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(hidden_units, int) or hidden_units < 1:
            raise ValueError("DeepCrossingResidualUnit: hidden_units must be a positive int, "
                             f"got {hidden_units!r}")
        self.hidden_units = hidden_units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        d = input_shape[-1]
        config = self.kernel_initializer.get_config()
        self.inner = keras.layers.Dense(
            self.hidden_units, activation="relu", name="inner",
            kernel_initializer=self.kernel_initializer.__class__.from_config(config),
            kernel_regularizer=self.kernel_regularizer, dtype=self.dtype_policy)
        self.outer = keras.layers.Dense(
            d, name="outer",
            kernel_initializer=self.kernel_initializer.__class__.from_config(config),
            kernel_regularizer=self.kernel_regularizer, dtype=self.dtype_policy)
        self.inner.build(tuple(input_shape))
        self.outer.build(tuple(input_shape[:-1]) + (self.hidden_units,))

    def call(self, inputs):
        return keras.ops.relu(self.outer(self.inner(inputs)) + inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_units": self.hidden_units,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
        }
