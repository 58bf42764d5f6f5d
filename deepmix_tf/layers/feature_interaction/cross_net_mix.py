"""CrossNetMix: the mixture of low-rank cross experts of DCN-V2 (DCN-Mix)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="deepmix_tf")
class CrossNetMix(keras.layers.Layer):
    """Cross network with a gated mixture of low-rank experts (Wang et al., WWW 2021, "DCN V2",
    section 3.3).

    For each cross layer `l` and expert `i` (of `K`):

        E_i(x_l) = x_0 * (U_i g(C_i g(V_i^T x_l)) + b)
        x_{l+1}  = sum_i G_i(x_l) E_i(x_l) + x_l,   G(x_l) = softmax(W_g^T x_l) over experts

    with `U_i` (d, r), `V_i` (d, r), `C_i` (r, r), bias `b` (d,) and gate kernel `W_g` (d, K)
    of layer `l`, and `*` the elementwise product. Each expert's matrices are initialised as
    their own (d, r) / (r, r) matrices, so Glorot counts fans per expert, never across the
    expert axis.

    Args:
        num_layers: int. Number of cross layers `L`. Defaults to 2.
        num_experts: int. Number of experts `K` per layer. Defaults to 4.
        low_rank: int. Rank `r` of each expert. Defaults to 32.
        activation: str or callable. `g`, applied in the rank-r space. Defaults to "tanh";
            `None` or "linear" is the identity.
        use_bias: bool. Whether experts add the bias `b`. Defaults to True.
        kernel_initializer: initializer of `U`, `V`, `C` and the gates (per expert).
            Defaults to "glorot_uniform".
        bias_initializer: initializer of `b`. Defaults to "zeros".
        kernel_regularizer: regularizer of `U`, `V`, `C`. Defaults to None.
        bias_regularizer: regularizer of `b`. Defaults to None.

    Call arguments:
        inputs: float tensor (batch, d): `x_0`, the stacked features.

    Example:
    >>> x0 = keras.random.normal((8, 24))
    >>> CrossNetMix(num_layers=2, num_experts=4, low_rank=8)(x0).shape
    (8, 24)
    """

    def __init__(self, num_layers=2, num_experts=4, low_rank=32, activation="tanh",
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("num_layers", num_layers), ("num_experts", num_experts),
                            ("low_rank", low_rank)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"CrossNetMix: {name} must be a positive int, got {value!r}")
        self.num_layers, self.num_experts, self.low_rank = num_layers, num_experts, low_rank
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)

    def build(self, input_shape):
        d, r, k = input_shape[-1], self.low_rank, self.num_experts
        self.layer_weights = []
        for l in range(self.num_layers):
            weights = {
                "V": self._expert_kernel(f"V_{l}", (k, d, r)),
                "C": self._expert_kernel(f"C_{l}", (k, r, r)),
                "U": self._expert_kernel(f"U_{l}", (k, r, d)),
                "gate": self.add_weight(name=f"gate_{l}", shape=(d, k),
                                        initializer=self._clone(self.kernel_initializer)),
            }
            if self.use_bias:
                weights["b"] = self.add_weight(name=f"bias_{l}", shape=(d,),
                                               initializer=self._clone(self.bias_initializer),
                                               regularizer=self.bias_regularizer)
            self.layer_weights.append(weights)

    def _clone(self, initializer):
        return initializer.__class__.from_config(initializer.get_config())

    def _expert_kernel(self, name, shape):
        # One initializer call per expert: fans are those of a (shape[1], shape[2]) matrix.
        initializer = self._clone(self.kernel_initializer)

        def per_expert(full_shape, dtype=None):
            return ops.stack([_for_expert(initializer, i)(full_shape[1:], dtype=dtype)
                              for i in range(full_shape[0])])

        return self.add_weight(name=name, shape=shape, initializer=per_expert,
                               regularizer=self.kernel_regularizer)

    def gate_weights(self, x, layer=0):
        """The softmax gate G(x) of cross layer `layer`: (batch, num_experts), rows sum to 1."""
        return ops.softmax(ops.matmul(x, self.layer_weights[layer]["gate"]), axis=-1)

    def call(self, inputs, x0=None):
        """`x0`: the base the layers cross with (DCN's x0); default `inputs`. Given, the
        first layer's input is `inputs` and every layer computes `x0 * mixed(x) + x`."""
        k, r = self.num_experts, self.low_rank
        d = inputs.shape[-1]
        x = inputs
        x0 = inputs if x0 is None else x0
        for l, w in enumerate(self.layer_weights):
            # All experts in one matmul each way: V as (d, K r) and U as (K r, d). Since the
            # gates sum to 1, sum_i G_i x0 * (U_i h_i + b) = x0 * ([G_1 h_1 .. G_K h_K] U + b):
            # the gates scale the rank-r codes, and no (K, batch, d) tensor is formed. The
            # gate logits ride in the same matmul as V (one (d, K r + K) product): on 2-core
            # CPUs a few small dots fewer per step (BUILD.md, training speed).
            v = ops.reshape(ops.transpose(w["V"], (1, 0, 2)), (d, k * r))
            z = ops.matmul(x, ops.concatenate([v, w["gate"]], axis=1))
            h = self.activation(ops.reshape(z[:, :k * r], (-1, k, r)))
            h = self.activation(ops.einsum("bkr,krs->bks", h, w["C"]))
            # One expert's gate is 1 (a softmax over one logit; Keras warns of that one).
            gates = ops.softmax(z[:, k * r:], axis=-1) if k > 1 else ops.ones_like(z[:, k * r:])
            h = h * ops.expand_dims(gates, -1)
            mixed = ops.matmul(ops.reshape(h, (-1, k * r)), ops.reshape(w["U"], (k * r, d)))
            if self.use_bias:
                mixed = mixed + w["b"]
            x = x0 * mixed + x
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "num_experts": self.num_experts,
            "low_rank": self.low_rank,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
        }


def _for_expert(initializer, index):
    """A fresh copy of `initializer` for expert `index`: a seeded one gets seed + index, so
    experts differ yet stay reproducible."""
    config = initializer.get_config()
    if isinstance(config.get("seed"), int):
        config["seed"] += index
    return initializer.__class__.from_config(config)
