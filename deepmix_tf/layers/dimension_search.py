"""AutoDim's embedding-dimension search (Zhao et al., WWW 2021, "AutoDim"), over candidate
widths of one field's embedding, optionally a width per frequency bucket of its values (NIS,
Joglekar et al., KDD 2020), and the retrain's embedding of a width per bucket."""

import keras
import numpy as np
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
        bucket_rows: None (one width for the field), or the rows of each frequency bucket
            of its values (NIS's search space: `frequency_buckets`). Each bucket then has
            logits of its own, and an id's sample comes from its bucket's; `set_buckets`
            says which row is in which bucket. Single ids only (not bags).

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
                 embeddings_regularizer=None, seed=None, pooling=None, bucket_rows=None,
                 **kwargs):
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
        self.bucket_rows = check_bucket_rows(bucket_rows, input_dim)
        if self.bucket_rows and pooling is not None:
            raise ValueError("frequency buckets apply to single ids, not to bags (pooling)")
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
        # (candidates,), or (buckets, candidates) with frequency buckets.
        shape = ((len(self.bucket_rows),) if self.bucket_rows else ()) + (len(self.candidates),)
        self.logits = self.add_weight(shape=shape, initializer="zeros", trainable=False,
                                      name=ARCHITECTURE)
        if self.bucket_rows:
            self.bucket_of = self.add_weight(shape=(self.input_dim,), dtype="int32",
                                             initializer="zeros", trainable=False,
                                             name="bucket_of")
        self.temperature = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.initial_temperature),
            trainable=False, name="temperature")

    def set_buckets(self, bucket_of):
        """Puts each row in its frequency bucket: `bucket_of` (input_dim,) ints, as
        `frequency_buckets` gives, with `bucket_rows` rows in each."""
        self.bucket_of.assign(checked_buckets(bucket_of, self.bucket_rows))

    def probabilities(self):
        """softmax(alpha): each candidate's probability, as a numpy array ((candidates,),
        or (buckets, candidates))."""
        return ops.convert_to_numpy(ops.softmax(ops.convert_to_tensor(self.logits)))

    def chosen_width(self):
        """The candidate of the largest logit (with buckets: a list, one per bucket)."""
        best = ops.convert_to_numpy(ops.argmax(self.logits, axis=-1))
        if self.bucket_rows:
            return [self.candidates[int(k)] for k in best]
        return self.candidates[int(best)]

    def architecture_summary(self):
        """{"width_<w>": probability} for TensorBoard (with buckets,
        "bucket_<b>/width_<w>")."""
        p = self.probabilities()
        if not self.bucket_rows:
            return {f"width_{w}": float(q) for w, q in zip(self.candidates, p)}
        return {f"bucket_{b}/width_{w}": float(q) for b in range(len(self.bucket_rows))
                for w, q in zip(self.candidates, p[b])}

    def architecture_cost(self):
        """Expected table parameters under softmax(alpha), as a fraction of the widest
        candidate's (differentiable in alpha): a search may add it to its held-out loss.
        With buckets, each bucket's weighs by its share of the rows."""
        p = ops.softmax(ops.convert_to_tensor(self.logits))
        widths = ops.convert_to_tensor([w / self.candidates[-1] for w in self.candidates],
                                       p.dtype)
        if not self.bucket_rows:
            return ops.sum(p * widths)
        share = ops.convert_to_tensor(np.asarray(self.bucket_rows) / self.input_dim, p.dtype)
        return ops.sum(share * ops.sum(p * widths, axis=-1))

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
        batch = (ops.shape(stacked)[0], len(self.candidates))
        if self.bucket_rows:  # each id's logits are those of its bucket
            logits = ops.take(logits, ops.take(self.bucket_of, index, axis=0), axis=0)
        if training:
            # A relaxed sample per example: the batch's gradient averages over many.
            p = gumbel_softmax(ops.broadcast_to(logits, batch), self.temperature,
                               self.seed_generator)
        else:
            p = ops.one_hot(ops.argmax(logits, axis=-1), len(self.candidates),
                            dtype=stacked.dtype)
            p = ops.broadcast_to(p, batch)
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
                "seed": self.seed, "pooling": self.pooling, "bucket_rows": self.bucket_rows}


@keras.saving.register_keras_serializable(package="deepmix_tf")
class FrequencyBucketEmbedding(keras.layers.Layer):
    """One field's embedding with a width per frequency bucket of its values (NIS): the
    retrain of a bucketed dimension search (`Config.embedding_dims` of a list per field).

        e = E_b[j] W_b      for row x in bucket b, at position j of that bucket's rows

    Bucket b's table `E_b` has only its own rows, at width `widths[b]`; `W_b` maps it to
    `output_dim` (by default the widest bucket's width, whose map is then left out). Rows
    of the head values can so be wide and those of the many tail values narrow.

    Args:
        bucket_rows: list of int. Rows in each bucket (`frequency_buckets`).
        widths: list of int. Each bucket's width.
        output_dim: int or None. The output width (None: max(widths)).
        embeddings_regularizer: regularizer of the tables.
        maps_regularizer: regularizer of the maps between widths.

    Call arguments:
        inputs: int (batch,) row ids in [0, sum(bucket_rows)).

    Returns:
        (batch, output_dim).

    Example:
    >>> layer = FrequencyBucketEmbedding([2, 3], [8, 2])
    >>> layer(keras.ops.convert_to_tensor([0, 4])).shape
    (2, 8)
    """

    def __init__(self, bucket_rows, widths, output_dim=None, embeddings_regularizer=None,
                 maps_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        widths = [int(w) for w in widths]
        self.bucket_rows = check_bucket_rows(bucket_rows, sum(int(r) for r in bucket_rows))
        if len(widths) != len(self.bucket_rows) or min(widths) < 1:
            raise ValueError(f"widths must be a positive width per bucket "
                             f"({len(self.bucket_rows)}), got {widths}")
        self.widths = widths
        self.output_dim = int(output_dim or max(widths))
        self.input_dim = sum(self.bucket_rows)
        self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)
        self.maps_regularizer = keras.regularizers.get(maps_regularizer)

    def build(self, input_shape):
        self.tables = [self.add_weight(shape=(max(rows, 1), w), initializer="uniform",
                                       regularizer=self.embeddings_regularizer,
                                       name=f"embeddings_{b}")
                       for b, (rows, w) in enumerate(zip(self.bucket_rows, self.widths))]
        self.maps = [None if w == self.output_dim else self.add_weight(
            shape=(w, self.output_dim), initializer="glorot_uniform",
            regularizer=self.maps_regularizer, name=f"map_{b}")
            for b, w in enumerate(self.widths)]
        self.bucket_of = self.add_weight(shape=(self.input_dim,), dtype="int32",
                                         initializer="zeros", trainable=False,
                                         name="bucket_of")
        self.position = self.add_weight(shape=(self.input_dim,), dtype="int32",
                                        initializer="zeros", trainable=False, name="position")

    def set_buckets(self, bucket_of):
        """Puts each row in its bucket (`frequency_buckets`), at its place among them in
        row order."""
        bucket_of = checked_buckets(bucket_of, self.bucket_rows)
        position = np.zeros(len(bucket_of), np.int32)
        for b in range(len(self.bucket_rows)):
            rows = bucket_of == b
            position[rows] = np.arange(int(rows.sum()), dtype=np.int32)
        self.bucket_of.assign(bucket_of)
        self.position.assign(position)

    def call(self, inputs):
        index = ops.cast(inputs, "int32")
        bucket = ops.take(self.bucket_of, index, axis=0)
        position = ops.take(self.position, index, axis=0)
        out = None
        for b, table in enumerate(self.tables):
            e = ops.take(table, ops.where(bucket == b, position, 0), axis=0)
            if self.maps[b] is not None:
                e = ops.matmul(e, self.maps[b])
            e = ops.where(ops.expand_dims(bucket == b, -1), e, ops.zeros_like(e))
            out = e if out is None else out + e
        return out

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {**super().get_config(), "bucket_rows": self.bucket_rows, "widths": self.widths,
                "output_dim": self.output_dim,
                "embeddings_regularizer": keras.regularizers.serialize(
                    self.embeddings_regularizer),
                "maps_regularizer": keras.regularizers.serialize(self.maps_regularizer)}


def frequency_buckets(counts, buckets):
    """NIS's frequency buckets of a field's rows: the rows ranked by their training count
    (ties: the lower row first), and bucket b the rows whose more frequent rows hold
    between b / buckets and (b + 1) / buckets of all occurrences. Bucket 0 is the head (a
    few frequent values), the last one the tail (many rare ones); rows never seen go to
    the last.

    Args:
        counts: int array (rows,). Each row's occurrences in the training split.
        buckets: int >= 1.

    Returns:
        int32 array (rows,): each row's bucket. A bucket may be empty (one value holding
        more than a bucket's share).
    """
    counts = np.asarray(counts, np.int64)
    if buckets < 1 or (counts < 0).any():
        raise ValueError(f"need buckets >= 1 and counts >= 0, got {buckets} buckets")
    order = np.lexsort((np.arange(len(counts)), -counts))
    ranked = counts[order]
    before = np.cumsum(ranked) - ranked
    bucket = np.minimum(buckets * before // max(int(counts.sum()), 1), buckets - 1)
    bucket[ranked == 0] = buckets - 1
    out = np.empty(len(counts), np.int32)
    out[order] = bucket
    return out


def check_bucket_rows(bucket_rows, input_dim):
    if bucket_rows is None:
        return None
    bucket_rows = [int(r) for r in bucket_rows]
    if len(bucket_rows) < 2 or min(bucket_rows) < 0 or sum(bucket_rows) != input_dim:
        raise ValueError(f"bucket_rows must be two or more row counts summing to the "
                         f"table's {input_dim} rows, got {bucket_rows}")
    return bucket_rows


def checked_buckets(bucket_of, bucket_rows):
    bucket_of = np.asarray(bucket_of, np.int32)
    found = np.bincount(bucket_of, minlength=len(bucket_rows))
    if bucket_of.min(initial=0) < 0 or len(found) != len(bucket_rows) or \
            found.tolist() != list(bucket_rows):
        raise ValueError(f"the rows' buckets hold {found.tolist()} rows; the layer was "
                         f"built for {list(bucket_rows)}")
    return bucket_of
