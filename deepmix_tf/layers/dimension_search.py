"""AutoDim's embedding-dimension search (Zhao et al., WWW 2021, "AutoDim"), over candidate
widths of one field's embedding."""

import keras
from keras import ops

from deepmix_tf.layers.gumbel import ARCHITECTURE, gumbel_softmax


@keras.saving.register_keras_serializable(package="deepmix_tf")
class DimensionSearchEmbedding(keras.layers.Layer):
    """One field's embedding at every candidate width, mixed by architecture weights:

        e_k = BN_k(E_k[x] W_k)                      E_k: (rows, w_k), W_k: (w_k, output_dim)
        e   = sum_k p_k e_k,    p = GumbelSoftmax(alpha / temperature)   while searching
                                (a sample per example)
        e   = e_argmax(alpha)                                            otherwise

    Each candidate width `w_k` has its own table `E_k` (or, with `share_weights`, the first
    `w_k` columns of one table of the widest candidate: the narrower candidates are slices
    of the wider ones) and its own linear map to the common `output_dim`, batch-normalised
    so that widths compete on what they encode, not on their scale. The logits `alpha` are
    not trainable weights: a search (`training.architecture.ArchitectureSearch`) updates
    them on held-out batches. The searched width is then fixed and the model retrained
    from scratch with a plain embedding of that width (`Config.embedding_dims`).

    Args:
        input_dim: int. Table rows.
        candidates: list of int. The candidate widths, increasing.
        output_dim: int. The common width every candidate maps to.
        share_weights: bool. One table of the widest candidate, sliced.
        temperature: float > 0. The Gumbel-softmax temperature (the search anneals it).
        momentum: float. Of the batch normalisations' moving statistics.
        embeddings_regularizer: regularizer of the tables.
        seed: int or None. Of the Gumbel noise.
        pooling: None for one id per example, or "sum" / "mean" for bags of ids (DLRM's
            multi-hot lookups, `layers.BagEmbedding`): each candidate pools its rows.

    Call arguments:
        inputs: int (batch,) row ids, or (batch, k) bags padded with -1.

    Returns:
        (batch, output_dim).

    Example:
    >>> layer = DimensionSearchEmbedding(100, candidates=[2, 4, 8], output_dim=8)
    >>> layer(keras.ops.convert_to_tensor([1, 2, 3])).shape
    (3, 8)
    """

    def __init__(self, input_dim, candidates=(2, 4, 8, 16, 32, 64), output_dim=16,
                 share_weights=False, temperature=1.0, momentum=0.99,
                 embeddings_regularizer=None, seed=None, pooling=None, **kwargs):
        super().__init__(**kwargs)
        candidates = [int(w) for w in candidates]
        if not candidates or min(candidates) < 1 or sorted(set(candidates)) != candidates:
            raise ValueError(f"candidates must be increasing positive widths, got {candidates}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.input_dim, self.candidates, self.output_dim = int(input_dim), candidates, output_dim
        self.share_weights, self.initial_temperature = share_weights, float(temperature)
        if pooling not in (None, "sum", "mean"):
            raise ValueError(f"pooling must be None, 'sum' or 'mean', got {pooling!r}")
        self.momentum, self.seed, self.pooling = momentum, seed, pooling
        self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.norms = [keras.layers.BatchNormalization(momentum=momentum, name=f"norm_{w}")
                      for w in candidates]

    def build(self, input_shape):
        widths = [self.candidates[-1]] if self.share_weights else self.candidates
        self.tables = [self.add_weight(shape=(self.input_dim, w), initializer="uniform",
                                       regularizer=self.embeddings_regularizer,
                                       name=f"embeddings_{w}") for w in widths]
        self.projections = [self.add_weight(shape=(w, self.output_dim),
                                            initializer="glorot_uniform",
                                            name=f"projection_{w}") for w in self.candidates]
        for norm in self.norms:
            norm.build((None, self.output_dim))
        self.logits = self.add_weight(shape=(len(self.candidates),), initializer="zeros",
                                      trainable=False, name=ARCHITECTURE)
        self.temperature = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.initial_temperature),
            trainable=False, name="temperature")

    def probabilities(self):
        """softmax(alpha): each candidate's probability, as a numpy array."""
        return ops.convert_to_numpy(ops.softmax(ops.convert_to_tensor(self.logits)))

    def chosen_width(self):
        """The candidate of the largest logit."""
        return self.candidates[int(ops.convert_to_numpy(ops.argmax(self.logits)))]

    def architecture_summary(self):
        """{"width_<w>": probability} for TensorBoard."""
        return {f"width_{w}": float(p) for w, p in zip(self.candidates, self.probabilities())}

    def architecture_cost(self):
        """Expected table parameters under softmax(alpha), as a fraction of the widest
        candidate's (differentiable in alpha): a search may add it to its held-out loss."""
        p = ops.softmax(ops.convert_to_tensor(self.logits))
        widths = ops.convert_to_tensor([w / self.candidates[-1] for w in self.candidates],
                                       p.dtype)
        return ops.sum(p * widths)

    def call(self, inputs, training=False):
        index = ops.cast(inputs, "int32")
        if self.pooling is not None:
            present = ops.cast(index >= 0, self.compute_dtype)
            index = ops.maximum(index, 0)
            count = ops.maximum(ops.sum(present, axis=1, keepdims=True), 1.0)
        outputs = []
        for k, w in enumerate(self.candidates):
            table = self.tables[0 if self.share_weights else k]
            e = ops.take(table, index, axis=0)
            if self.share_weights:
                e = e[..., :w]
            if self.pooling is not None:
                e = ops.einsum("bk,bkd->bd", present, e)
                e = e / count if self.pooling == "mean" else e
            outputs.append(self.norms[k](ops.matmul(e, self.projections[k]), training=training))
        stacked = ops.stack(outputs, axis=1)  # (batch, candidates, output_dim)
        logits = ops.convert_to_tensor(self.logits)
        if training:
            # A relaxed sample per example: the batch's gradient averages over many.
            logits = ops.broadcast_to(logits, (ops.shape(stacked)[0], len(self.candidates)))
            p = gumbel_softmax(logits, self.temperature, self.seed_generator)
        else:
            p = ops.one_hot(ops.argmax(logits), len(self.candidates), dtype=stacked.dtype)
            p = ops.broadcast_to(p, (ops.shape(stacked)[0], len(self.candidates)))
        return ops.einsum("bkd,bk->bd", stacked, ops.cast(p, stacked.dtype))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim,
                "candidates": self.candidates, "output_dim": self.output_dim,
                "share_weights": self.share_weights, "temperature": self.initial_temperature,
                "momentum": self.momentum,
                "embeddings_regularizer": keras.regularizers.serialize(
                    self.embeddings_regularizer),
                "seed": self.seed, "pooling": self.pooling}
