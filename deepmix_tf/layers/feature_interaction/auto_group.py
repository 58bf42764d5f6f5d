"""AutoGroup's feature sets and their explicit interactions (Liu et al., SIGIR 2020,
"AutoGroup: Automatic Feature Grouping for Modelling Explicit High-Order Feature
Interactions in CTR Prediction")."""

import keras
from keras import ops

from deepmix_tf.layers.gumbel import ARCHITECTURE, gumbel_softmax


@keras.saving.register_keras_serializable(package="deepmix_tf")
class AutoGroup(keras.layers.Layer):
    """Feature sets chosen per interaction order, and the p-order interaction within each:

        s_(i,j)^p  = 1 if field i is in set j of order p, else 0
        g_j^p      = sum_i s_(i,j)^p w_(i,j)^p e_i
        I_j^1      = g_j^1                                           (a d-vector)
        I_j^p      = sum_d [ (g_j^p)^p - sum_i (s_(i,j)^p w_(i,j)^p e_i)^p ]   (p >= 2)

    For p = 2, `I_j` is twice the sum of the pairwise inner products of the set's weighted
    embeddings (FM's identity); for higher p it is AutoGroup's cost-linear stand-in for the
    p-order products. The output is every `I_j^p`, concatenated and (optionally)
    batch-normalised, for an MLP to read.

    Each `s_(i,j)^p` is a two-way choice (out, in) with architecture logits
    `pi_(i,j)^p`. While searching (`training=True` and no fixed `groups`) it is relaxed to
    the "in" entry of a Gumbel-softmax sample at the layer's `temperature`; otherwise it is
    the hard argmax. The logits are not trainable weights: a search
    (`training.architecture.ArchitectureSearch`) updates them on held-out batches,
    alternating with the ordinary training steps of everything else.

    Args:
        num_fields: int. How many field embeddings the layer takes.
        orders: list of int >= 1. The interaction orders.
        sets: int, or a list of one int per order. Feature sets per order.
        groups: None (search the sets), or {order: [[field position, ...], ...]}: fixed
            sets (a retrain of searched sets). `orders` and `sets` then come from it.
        temperature: float > 0. The Gumbel-softmax temperature (the search anneals it).
        batch_norm: bool. Normalise the outputs (p-order terms grow as the p-th power of
            the embeddings).
        momentum: float. Of the batch normalisation's moving statistics.
        field_names: list of `num_fields` str, or None: kept for reports of the sets.
        seed: int or None. Of the Gumbel noise.

    Call arguments:
        inputs: a list of `num_fields` float tensors (batch, d), or one (batch, fields, d).

    Returns:
        (batch, sum over orders of sets * (d if order == 1 else 1)).

    Example:
    >>> e = [keras.random.normal((8, 4)) for _ in range(5)]
    >>> AutoGroup(5, orders=[1, 2, 3], sets=2)(e).shape
    (8, 12)
    """

    def __init__(self, num_fields, orders=(2,), sets=4, groups=None, temperature=1.0,
                 batch_norm=True, momentum=0.99, field_names=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_fields, int) or num_fields < 2:
            raise ValueError(f"AutoGroup needs at least 2 fields, got {num_fields!r}")
        if field_names is not None and len(field_names) != num_fields:
            raise ValueError(f"{len(field_names)} field names for {num_fields} fields")
        self.num_fields = num_fields
        self.field_names = None if field_names is None else [str(n) for n in field_names]
        if groups is not None:
            groups = {int(p): [sorted(int(i) for i in s) for s in sets_]
                      for p, sets_ in sorted(groups.items(), key=lambda kv: int(kv[0]))}
            bad = [s for sets_ in groups.values() for s in sets_
                   if not s or not all(0 <= i < num_fields for i in s) or len(set(s)) < len(s)]
            if bad or not groups or not all(groups.values()):
                raise ValueError(f"groups must map each order to non-empty sets of distinct "
                                 f"field positions in [0, {num_fields}); got {groups}")
            orders, sets = list(groups), [len(s) for s in groups.values()]
        orders = [int(p) for p in orders]
        if not orders or sorted(set(orders)) != orders or orders[0] < 1:
            raise ValueError(f"orders must be increasing ints >= 1, got {orders}")
        sets = [int(sets)] * len(orders) if isinstance(sets, int) else [int(n) for n in sets]
        if len(sets) != len(orders) or min(sets) < 1:
            raise ValueError(f"sets must be an int >= 1 or one per order; got {sets} for "
                             f"orders {orders}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.orders, self.sets, self.groups = orders, sets, groups
        self.initial_temperature = float(temperature)
        self.batch_norm, self.momentum, self.seed = batch_norm, momentum, seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.norm = (keras.layers.BatchNormalization(momentum=momentum, name="norm")
                     if batch_norm else None)

    def build(self, input_shape):
        shape = input_shape if not isinstance(input_shape[0], (list, tuple)) else None
        dim = int(shape[-1]) if shape is not None else int(input_shape[0][-1])
        self.structure, self.field_weights = [], []
        for p, n in zip(self.orders, self.sets):
            if self.groups is None:
                # Small random logits break the symmetry between an order's sets (a seed
                # per order, so orders differ too).
                init = keras.initializers.RandomNormal(
                    stddev=0.01, seed=None if self.seed is None else self.seed + p)
            else:
                inside = [[0.0] * n for _ in range(self.num_fields)]
                for j, members in enumerate(self.groups[p]):
                    for i in members:
                        inside[i][j] = 1.0
                init = keras.initializers.Constant(
                    [[[-a, a] for a in (2.0 * x - 1.0 for x in row)] for row in inside])
            self.structure.append(self.add_weight(
                shape=(self.num_fields, n, 2), initializer=init, trainable=False,
                name=ARCHITECTURE))
            self.field_weights.append(self.add_weight(
                shape=(self.num_fields, n), initializer="ones", name=f"order_{p}_weights"))
        self.temperature = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.initial_temperature),
            trainable=False, name="temperature")
        if self.norm is not None:
            self.norm.build((None, sum(n * (dim if p == 1 else 1)
                                       for p, n in zip(self.orders, self.sets))))

    def memberships(self, training=False):
        """[(fields, sets) membership per order]: relaxed samples while searching, else 0/1."""
        out = []
        for logits in self.structure:
            logits = ops.convert_to_tensor(logits)
            if training and self.groups is None:
                out.append(gumbel_softmax(logits, self.temperature, self.seed_generator)[..., 1])
            else:
                out.append(ops.cast(logits[..., 1] > logits[..., 0], logits.dtype))
        return out

    def architecture_summary(self):
        """{"order_<p>/set_<j>/<field>": P(in)} for TensorBoard."""
        names = self.field_names or [str(i) for i in range(self.num_fields)]
        out = {}
        for p, logits in zip(self.orders, self.structure):
            inside = ops.convert_to_numpy(ops.softmax(ops.convert_to_tensor(logits)))[..., 1]
            for j in range(inside.shape[1]):
                for i, name in enumerate(names):
                    out[f"order_{p}/set_{j}/{name}"] = float(inside[i, j])
        return out

    def feature_sets(self):
        """{order: [[field position, ...] per set]}: the hard sets (argmax of the logits)."""
        return {p: [[i for i in range(self.num_fields) if bool(m[i, j])]
                    for j in range(n)]
                for p, n, m in zip(self.orders, self.sets,
                                   (ops.convert_to_numpy(m) for m in self.memberships()))}

    def call(self, inputs, training=False):
        x = ops.stack(inputs, axis=1) if isinstance(inputs, (list, tuple)) else inputs
        outputs = []
        for p, s, w in zip(self.orders, self.memberships(training), self.field_weights):
            v = s * ops.cast(w, x.dtype)
            g = ops.einsum("bfd,fs->bsd", x, v)
            if p == 1:
                outputs.append(ops.reshape(g, (-1, g.shape[1] * g.shape[2])))
            else:
                own = ops.einsum("bfd,fs->bsd", ops.power(x, p), ops.power(v, p))
                outputs.append(ops.sum(ops.power(g, p) - own, axis=-1))
        y = ops.concatenate(outputs, axis=-1) if len(outputs) > 1 else outputs[0]
        return self.norm(y, training=training) if self.norm is not None else y

    def compute_output_shape(self, input_shape):
        listed = isinstance(input_shape[0], (list, tuple))
        batch, dim = (input_shape[0][0], input_shape[0][-1]) if listed else (
            input_shape[0], input_shape[-1])
        return (batch, sum(n * (dim if p == 1 else 1) for p, n in zip(self.orders, self.sets)))

    def get_config(self):
        return {**super().get_config(), "num_fields": self.num_fields, "orders": self.orders,
                "sets": self.sets,
                "groups": None if self.groups is None else {str(p): s for p, s in
                                                            self.groups.items()},
                "temperature": self.initial_temperature, "batch_norm": self.batch_norm,
                "momentum": self.momentum, "field_names": self.field_names,
                "seed": self.seed}
