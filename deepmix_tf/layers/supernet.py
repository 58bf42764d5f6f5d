"""A weight-sharing supernet over the search space of `deepmix_tf.nas.space`: one set of
weights at the widest choice of everything, sliced (masked) for narrower choices, and one
architecture active at a time."""

import keras
import numpy as np
from keras import ops

from deepmix_tf.layers.feature_interaction.cross_net_mix import CrossNetMix
from deepmix_tf.nas.space import OPERATORS, SearchSpace


@keras.saving.register_keras_serializable(package="deepmix_tf")
class SuperNet(keras.layers.Layer):
    """Every architecture of a `SearchSpace` over a stacked feature vector, sharing weights.

    Each block b reads the mean of its chosen inputs (the stacked features x0 and earlier
    blocks' outputs, all of the stacked width D) and applies its operator:

        mlp       y = x + relu(x W1 + b1)[:h] W2[:h] + b2      h = width * D hidden units
        cross     y = x0 * (sum_k g_k U_k relu(C_k relu(V_k x)[:r])[:r] + b) + x
                      g = softmax over the first `experts` gate logits (CrossNetMix, one layer)
        dot       y = x + vec(Z0 Z^T) Q + c,   Z = reshape(x P, (dot_fields, dot_dim)),
                      Z0 the same of x0
        identity  y = x

    The crosses and dots are with x0, the stacked features, as in DCN: a stack of them
    raises the degree of the polynomial by one a block, not doubling it (crosses of a
    block's own input overflowed in supernet training).

    then the head, `relu(y W + b)[:head]`. Weights are those of the widest choice (most
    hidden units, experts, rank, head); a narrower choice uses their first rows and columns
    and masks the rest, so every architecture shares them. A field's embedding width w
    keeps the first w of its columns: x0 and every block's output are zero in the others,
    so the active architecture computes what its stand-alone blocks and head
    (`child_network`, of stacked width `active_width`) compute with the weights `inherit`
    copies. An mlp block's hidden units are `width` times that
    stacked width. Only the active block operators run (`ops.switch`).

    The active architecture lives in non-trainable integer weights: `set_architecture`
    changes it between steps without retracing.

    Args:
        space: a `SearchSpace` or its dict.
        segments: [(field, first column, width)] of the searched fields in x0, at their
            widest (`space.embedding_widths[-1]`).
        dot_fields, dot_dim: the dot operator's shape.

    Call arguments:
        inputs: (batch, D) stacked features.

    Returns:
        (batch, max(space.head_widths)); the units beyond the active head width are 0.
    """

    def __init__(self, space, segments=(), dot_fields=8, dot_dim=8, **kwargs):
        super().__init__(**kwargs)
        self.space = space if isinstance(space, SearchSpace) else SearchSpace(**space)
        self.segments = [(str(f), int(s), int(w)) for f, s, w in segments]
        if [f for f, _, _ in self.segments] != list(self.space.fields):
            raise ValueError(f"segments must name the space's fields {list(self.space.fields)} "
                             f"in order, got {[f for f, _, _ in self.segments]}")
        if any(w != self.space.embedding_widths[-1] for _, _, w in self.segments):
            raise ValueError("segments must be at the widest embedding width "
                             f"{self.space.embedding_widths[-1]}")
        self.dot_fields, self.dot_dim = int(dot_fields), int(dot_dim)

    def build(self, input_shape):
        d, n, s = int(input_shape[-1]), self.space.blocks, self.space
        self.width = d
        hidden = int(round(max(s.mlp_widths) * d))
        k, r, pairs = max(s.experts), max(s.ranks), self.dot_fields ** 2

        def weight(name, shape, init="glorot_uniform"):
            return self.add_weight(shape=shape, initializer=init, name=name)

        self.blocks = []
        for b in range(n):
            self.blocks.append({
                "w1": weight(f"mlp_{b}_w1", (d, hidden)),
                "b1": weight(f"mlp_{b}_b1", (hidden,), "zeros"),
                "w2": weight(f"mlp_{b}_w2", (hidden, d)),
                "b2": weight(f"mlp_{b}_b2", (d,), "zeros"),
                "v": weight(f"cross_{b}_v", (d, k * r)),
                "c": weight(f"cross_{b}_c", (k, r, r)),
                "u": weight(f"cross_{b}_u", (k * r, d)),
                "gate": weight(f"cross_{b}_gate", (d, k)),
                "cb": weight(f"cross_{b}_b", (d,), "zeros"),
                "p": weight(f"dot_{b}_p", (d, self.dot_fields * self.dot_dim)),
                "q": weight(f"dot_{b}_q", (pairs, d)),
                "qb": weight(f"dot_{b}_b", (d,), "zeros"),
            })
        self.head_kernel = weight("head_kernel", (d, max(s.head_widths)))
        self.head_bias = weight("head_bias", (max(s.head_widths),), "zeros")

        def state(name, shape, value=0):
            return self.add_weight(shape=shape, dtype="int32", trainable=False, name=name,
                                   initializer=keras.initializers.Constant(value))

        # The active architecture; by default the first block reads x0, the others the
        # previous block, every operator the identity at its widest.
        self.op = state("architecture_op", (n,), OPERATORS.index("identity"))
        self.inputs_mask = state("architecture_inputs", (n, n + 1))
        self.hidden = state("architecture_hidden", (n,), hidden)
        self.experts = state("architecture_experts", (n,), k)
        self.rank = state("architecture_rank", (n,), r)
        self.head = state("architecture_head", (), max(s.head_widths))
        self.field_width = state("architecture_field_width", (len(self.segments),),
                                 s.embedding_widths[-1])
        self.inputs_mask.assign(np.eye(n, n + 1, dtype=np.int32))
        field_of = np.full(d, -1, np.int32)
        offset = np.zeros(d, np.int32)
        for i, (_, start, w) in enumerate(self.segments):
            if start + w > d:
                raise ValueError(f"segment {self.segments[i]} lies beyond the input width {d}")
            field_of[start:start + w], offset[start:start + w] = i, np.arange(w)
        self._field_of, self._offset = field_of, offset

    def set_architecture(self, architecture):
        """Makes `architecture` (a dict of the space, `SearchSpace.check`ed) the active one."""
        self.space.check(architecture)
        n = self.space.blocks
        op, mask = np.zeros(n, np.int32), np.zeros((n, n + 1), np.int32)
        # Choices of operators a block does not use stay at their widest.
        hidden = np.full(n, int(round(max(self.space.mlp_widths) * self.width)), np.int32)
        experts = np.full(n, max(self.space.experts), np.int32)
        rank = np.full(n, max(self.space.ranks), np.int32)
        width = self.active_width(architecture)
        for b, block in enumerate(architecture["blocks"]):
            op[b] = OPERATORS.index(block["op"])
            mask[b, block["inputs"]] = 1
            if block["op"] == "mlp":
                hidden[b] = int(round(block["width"] * width))
            if block["op"] == "cross":
                experts[b], rank[b] = block["experts"], block["rank"]
        self.op.assign(op)
        self.inputs_mask.assign(mask)
        self.hidden.assign(hidden)
        self.experts.assign(experts)
        self.rank.assign(rank)
        self.head.assign(architecture["head"])
        self.field_width.assign([architecture["embedding_dims"][f] for f, _, _ in self.segments])

    def active_columns(self, architecture):
        """The stacked columns an architecture keeps (its fields' first widths, and every
        column outside the searched fields), as indices."""
        keep = np.ones(self.width, bool)
        for f, start, w in self.segments:
            keep[start + architecture["embedding_dims"][f]:start + w] = False
        return np.flatnonzero(keep)

    def active_width(self, architecture):
        """The stacked width of an architecture's stand-alone network."""
        return len(self.active_columns(architecture))

    def call(self, inputs):
        keep = ops.ones((self.width,), inputs.dtype)
        if self.segments:
            field_of = ops.convert_to_tensor(self._field_of)
            widths = ops.take(self.field_width, ops.maximum(field_of, 0))
            keep = ops.cast((field_of < 0) | (ops.convert_to_tensor(self._offset) < widths),
                            inputs.dtype)
        outputs = [inputs * keep]
        for b, w in enumerate(self.blocks):
            mask = ops.cast(self.inputs_mask[b, :b + 1], inputs.dtype)
            x = ops.einsum("jbd,j->bd", ops.stack(outputs, axis=0), mask) / ops.sum(mask)
            x0 = outputs[0]
            branches = [lambda x, b=b, w=w: self._mlp(x, b, w),
                        lambda x, b=b, w=w: self._cross(x, x0, b, w),
                        lambda x, w=w: self._dot(x, x0, w),
                        lambda x: x]
            outputs.append(ops.switch(self.op[b], branches, x) * keep)
        units = ops.arange(max(self.space.head_widths))
        head = ops.relu(ops.matmul(outputs[-1], self.head_kernel) + self.head_bias)
        return head * ops.cast(units < self.head, head.dtype)

    def _mlp(self, x, b, w):
        units = ops.arange(w["w1"].shape[1])
        h = ops.relu(ops.matmul(x, w["w1"]) + w["b1"])
        h = h * ops.cast(units < self.hidden[b], h.dtype)
        return x + ops.matmul(h, w["w2"]) + w["b2"]

    def _cross(self, x, x0, b, w):
        k, r = w["c"].shape[0], w["c"].shape[1]
        rank = ops.cast(ops.arange(r) < self.rank[b], x.dtype)
        h = ops.relu(ops.reshape(ops.matmul(x, w["v"]), (-1, k, r))) * rank
        h = ops.relu(ops.einsum("bkr,krs->bks", h, w["c"])) * rank
        logits = ops.matmul(x, w["gate"])
        logits = ops.where(ops.arange(k) < self.experts[b], logits, -1e9)
        h = h * ops.expand_dims(ops.softmax(logits, axis=-1), -1)
        mixed = ops.matmul(ops.reshape(h, (-1, k * r)), w["u"]) + w["cb"]
        return x0 * mixed + x

    def _dot(self, x, x0, w):
        return dot_operator(x, x0, w["p"], w["q"], w["qb"], self.dot_fields, self.dot_dim)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], max(self.space.head_widths))

    def get_config(self):
        space = {k: list(v) if isinstance(v, tuple) else v
                 for k, v in vars(self.space).items()}
        return {**super().get_config(), "space": space,
                "segments": [list(s) for s in self.segments],
                "dot_fields": self.dot_fields, "dot_dim": self.dot_dim}


@keras.saving.register_keras_serializable(package="deepmix_tf")
class DotBlock(keras.layers.Layer):
    """The dot operator of a stand-alone network: `x + vec(Z0 Z^T) Q + c`, with
    `Z = reshape(x P, (fields, dim))` and `Z0` the same of `x0`: inner products of `fields`
    learned projections of the input with those of the stacked features (a factorisation
    machine over virtual fields, crossed with x0 as DCN crosses).

    Args:
        fields, dim: the projections' number and width.

    Call arguments:
        inputs: (batch, D).
        x0: (batch, D), the stacked features; default `inputs`.
    """

    def __init__(self, fields=8, dim=8, **kwargs):
        super().__init__(**kwargs)
        self.fields, self.dim = int(fields), int(dim)

    def build(self, input_shape):
        d = int(input_shape[-1])
        self.p = self.add_weight(shape=(d, self.fields * self.dim), name="p")
        self.q = self.add_weight(shape=(self.fields ** 2, d), name="q")
        self.c = self.add_weight(shape=(d,), initializer="zeros", name="c")

    def call(self, inputs, x0=None):
        return dot_operator(inputs, inputs if x0 is None else x0, self.p, self.q, self.c,
                            self.fields, self.dim)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "fields": self.fields, "dim": self.dim}


def dot_operator(x, x0, p, q, c, fields, dim):
    """`x + vec(Z0 Z^T) Q + c`, `Z = reshape(x P, (fields, dim))`, `Z0` the same of `x0`:
    the dot operator, of the supernet and of a stand-alone network alike."""
    z = ops.reshape(ops.matmul(x, p), (-1, fields, dim))
    z0 = ops.reshape(ops.matmul(x0, p), (-1, fields, dim))
    gram = ops.reshape(ops.einsum("bfe,bge->bfg", z0, z), (-1, fields ** 2))
    return x + ops.matmul(gram, q) + c


def child_network(x, architecture, dot_fields=8, dot_dim=8, name="nas"):
    """The stand-alone network of one architecture over stacked features `x` (Keras
    tensors, width D): plain layers of the architecture's sizes, each named
    `<name>_block_<b>` (and `<name>_block_<b>_hidden`, `<name>_head`). Returns the head's
    output, (batch, architecture["head"])."""
    d = int(x.shape[-1])
    outputs = [x]
    for b, block in enumerate(architecture["blocks"]):
        chosen = [outputs[j] for j in block["inputs"]]
        h = (keras.layers.Average(name=f"{name}_block_{b}_inputs")(chosen) if len(chosen) > 1
             else chosen[0])
        if block["op"] == "mlp":
            hidden = keras.layers.Dense(int(round(block["width"] * d)), activation="relu",
                                        name=f"{name}_block_{b}_hidden")(h)
            y = keras.layers.Add(name=f"{name}_block_{b}_add")(
                [h, keras.layers.Dense(d, name=f"{name}_block_{b}")(hidden)])
        elif block["op"] == "cross":
            y = CrossNetMix(num_layers=1, num_experts=block["experts"], low_rank=block["rank"],
                            activation="relu", name=f"{name}_block_{b}")(h, x0=x)
        elif block["op"] == "dot":
            y = DotBlock(dot_fields, dot_dim, name=f"{name}_block_{b}")(h, x0=x)
        else:
            y = h
        outputs.append(y)
    return keras.layers.Dense(architecture["head"], activation="relu",
                              name=f"{name}_head")(outputs[-1])


def inherit(supernet, model, architecture, name="nas"):
    """Copies the supernet's weights of `architecture` into the layers `child_network`
    made of it in `model`: the slices the active architecture uses."""
    keep = supernet.active_columns(architecture)
    k_max, r_max = max(supernet.space.experts), max(supernet.space.ranks)
    for b, (block, w) in enumerate(zip(architecture["blocks"], supernet.blocks)):
        get = {key: v.numpy() for key, v in w.items()}
        if block["op"] == "mlp":
            h = int(round(block["width"] * len(keep)))
            model.get_layer(f"{name}_block_{b}_hidden").set_weights(
                [get["w1"][keep][:, :h], get["b1"][:h]])
            model.get_layer(f"{name}_block_{b}").set_weights(
                [get["w2"][:h][:, keep], get["b2"][keep]])
        elif block["op"] == "cross":
            k, r = block["experts"], block["rank"]
            v = get["v"][keep].reshape(len(keep), k_max, r_max)[:, :k, :r].transpose(1, 0, 2)
            u = get["u"].reshape(k_max, r_max, -1)[:k, :r][:, :, keep]
            model.get_layer(f"{name}_block_{b}").set_weights(
                [v, get["c"][:k, :r, :r], u, get["gate"][keep][:, :k], get["cb"][keep]])
        elif block["op"] == "dot":
            model.get_layer(f"{name}_block_{b}").set_weights(
                [get["p"][keep], get["q"][:, keep], get["qb"][keep]])
    head = architecture["head"]
    model.get_layer(f"{name}_head").set_weights(
        [supernet.head_kernel.numpy()[keep][:, :head], supernet.head_bias.numpy()[:head]])
