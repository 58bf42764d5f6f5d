"""AutoFIS's gated pairwise interactions (Liu et al., KDD 2020, "AutoFIS")."""

import itertools

import keras
from keras import ops

# The gates' variable name: `optimizers.GatedAdam` gives the variables of this name to GRDA.
GATES = "interaction_gates"


@keras.saving.register_keras_serializable(package="deepmix_tf")
class GatedInteraction(keras.layers.Layer):
    """Pairwise inner products of field embeddings, each batch-normalised and gated:

        z_(i,j) = alpha_(i,j) * BN(<e_i, e_j>)      for each pair (i, j) of `pairs`

    and, with `order=3`, third-order products too: `alpha_(i,j,k) * BN(sum_d e_i e_j e_k)`
    for triples (i, j, k) (AutoFIS's third-order variant).

    BN has no scale or offset of its own (only its moving statistics), so the gate
    `alpha_(i,j)` alone sets the interaction's weight; trained with `optimizers.GRDA`, the
    gates of useless pairs become exactly 0 (AutoFIS's search stage). Retraining keeps only the
    surviving pairs (`pairs=`), their gates starting from the searched values
    (`gate_values=`).

    Args:
        num_fields: int. How many field embeddings the layer takes.
        pairs: list of [i, j] (or, with `order=3`, also [i, j, k]) increasing field
            positions, or None for every pair (then every triple), in (0, 1), (0, 2), ...,
            (1, 2), ... order.
        gate_values: list of floats, one per pair, or None (every gate starts at
            `gate_init`).
        gate_init: float. Starting gate when `gate_values` is None.
        batch_norm: bool. Normalise each interaction (AutoFIS does; without it the gate and
            the embeddings' scale trade off against each other).
        momentum: float. Of the batch normalisation's moving statistics.
        field_names: list of `num_fields` str, or None: names of the fields, kept for
            reports of which pairs survived.
        order: 2 or 3. The highest interaction order.

    Call arguments:
        inputs: a list of `num_fields` float tensors (batch, d), or one (batch, fields, d).

    Returns:
        (batch, len(pairs)) gated interactions, in the order of `pairs`.

    Example:
    >>> e = [keras.random.normal((8, 4)) for _ in range(3)]
    >>> GatedInteraction(3)(e).shape
    (8, 3)
    """

    def __init__(self, num_fields, pairs=None, gate_values=None, gate_init=1.0,
                 batch_norm=True, momentum=0.99, field_names=None, order=2, **kwargs):
        super().__init__(**kwargs)
        if field_names is not None and len(field_names) != num_fields:
            raise ValueError(f"{len(field_names)} field names for {num_fields} fields")
        self.field_names = None if field_names is None else [str(n) for n in field_names]
        if not isinstance(num_fields, int) or num_fields < 2:
            raise ValueError(f"GatedInteraction needs at least 2 fields, got {num_fields!r}")
        self.num_fields = num_fields
        if order not in (2, 3):
            raise ValueError(f"GatedInteraction's order must be 2 or 3, got {order!r}")
        self.order = order
        if pairs is None:
            pairs = [c for size in range(2, order + 1)
                     for c in itertools.combinations(range(num_fields), size)]
        self.pairs = [[int(i) for i in p] for p in pairs]
        bad = [p for p in self.pairs if not 2 <= len(p) <= order
               or not all(0 <= a < b < num_fields for a, b in zip(p, p[1:]))]
        if bad or not self.pairs:
            raise ValueError(f"pairs must be increasing positions in [0, {num_fields}), 2 to "
                             f"{order} of them (order={order}), and at least one; got "
                             f"{bad or self.pairs}")
        if gate_values is not None and len(gate_values) != len(self.pairs):
            raise ValueError(f"{len(gate_values)} gate values for {len(self.pairs)} pairs")
        self.gate_values = None if gate_values is None else [float(v) for v in gate_values]
        self.gate_init = float(gate_init)
        self.batch_norm = batch_norm
        self.momentum = momentum
        self.norm = (keras.layers.BatchNormalization(center=False, scale=False,
                                                     momentum=momentum, name="norm")
                     if batch_norm else None)

    def build(self, input_shape):
        init = (keras.initializers.Constant(self.gate_values) if self.gate_values is not None
                else keras.initializers.Constant(self.gate_init))
        self.gates = self.add_weight(shape=(len(self.pairs),), initializer=init, name=GATES)
        if self.norm is not None:
            self.norm.build((None, len(self.pairs)))

    def call(self, inputs, training=False):
        x = ops.stack(inputs, axis=1) if isinstance(inputs, (list, tuple)) else inputs
        sizes = sorted({len(p) for p in self.pairs})
        parts, where = [], []
        for size in sizes:
            chosen = [k for k, p in enumerate(self.pairs) if len(p) == size]
            product = ops.take(x, [self.pairs[k][0] for k in chosen], axis=1)
            for position in range(1, size):
                product = product * ops.take(x, [self.pairs[k][position] for k in chosen],
                                             axis=1)
            parts.append(ops.sum(product, axis=-1))
            where += chosen
        z = ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
        if len(parts) > 1:  # back to the order of `pairs`
            z = ops.take(z, [where.index(k) for k in range(len(self.pairs))], axis=1)
        if self.norm is not None:
            z = self.norm(z, training=training)
        return z * ops.cast(self.gates, z.dtype)

    def compute_output_shape(self, input_shape):
        batch = input_shape[0][0] if isinstance(input_shape, (list, tuple)) and isinstance(
            input_shape[0], (list, tuple)) else input_shape[0]
        return (batch, len(self.pairs))

    def get_config(self):
        return {**super().get_config(), "num_fields": self.num_fields, "pairs": self.pairs,
                "gate_values": self.gate_values, "gate_init": self.gate_init,
                "batch_norm": self.batch_norm, "momentum": self.momentum,
                "field_names": self.field_names, "order": self.order}
