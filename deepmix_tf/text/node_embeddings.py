"""Movie node embeddings: frozen pretrained encoder -> NodeEncoder trained self-supervised
against the rating graph -> `node_embeddings.npy`.

Why self-supervised: no task label is used, so one procedure serves both tasks and can
never leak the genre labels of validation or test movies. Two objectives
(`NodeConfig.objective`):

- "contrastive": the decoder's queries are trained so that a movie's node vector picks out
  that movie's own targets among the other movies of a batch (symmetric InfoNCE, as in
  CLIP). The targets (`NodeConfig.targets`) are its rating-graph vector ("graph": what the
  audience did) and its frozen sentence embedding ("text": what the text says, so the node
  vector keeps the text's content instead of only re-deriving the graph).
- "graph_prior": the node vector predicts, from the text alone, where the movie sits in the
  spectral embedding of the rating graph (the `svd_*` columns of its graph table; squared
  error, so where the text says little the estimate leans towards the average position, as
  a conditional mean does). Cross-fitted: the movies are dealt into `folds` folds and each
  fold's vectors come from a decoder trained on the other folds, so no vector repeats its
  own movie's graph position. For movies with few ratings, whose spectral position is
  mostly noise, the model can then lean on the text's estimate (`Config.node_prior`): a
  prior in the space the model already reads, instead of new columns it must learn to use
  from 388 labelled movies.
"""

import dataclasses
import hashlib
import json
import os

import numpy as np

from deepmix_tf.files import staged_directory
from deepmix_tf.text.node_encoder import NodeEncoder

EMBEDDINGS, IDS, METADATA = "node_embeddings.npy", "node_embeddings.ids.npy", \
    "node_embeddings.json"


@dataclasses.dataclass
class NodeConfig:
    """How node embeddings are made (saved in the metadata JSON beside them)."""

    num_queries: int = 4
    num_layers: int = 1
    num_heads: int = 4
    intermediate_dim: int = 512
    node_dim: int = 64
    dropout: float = 0.1
    temperature: float = 0.1
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3
    sequence_length: int = 256
    seed: int = 42
    targets: tuple = ("graph", "text")
    objective: str = "contrastive"
    min_ratings: int = 1
    folds: int = 5
    pool_sequence: bool = False

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown node objective {self.objective!r}; expected one of "
                             f"{OBJECTIVES}")
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds!r}")


OBJECTIVES = ("contrastive", "graph_prior")


def encode_sequences(encoder, texts, batch_size=64, progress=None):
    """Runs the frozen encoder once over `texts`.

    Returns:
        (sequences: list of float16 (length_i, d) arrays without padding, sentence
        embeddings: float32 (n, d) mean-pooled and L2-normalised).
    """
    from deepmix_tf.text.sentence_encoder import mean_pool

    sequences = [None] * len(texts)
    sentences = np.zeros((len(texts), encoder.hidden_dim), np.float32)
    for index, output, mask in encoder.encode_by_length(texts, batch_size, progress):
        sentences[index] = mean_pool(output, mask)
        for row, i in enumerate(index):
            sequences[i] = output[row, :mask[row].sum()].astype(np.float16)
    return sequences, sentences


def _pad(sequences):
    length = max(len(s) for s in sequences)
    out = np.zeros((len(sequences), length, sequences[0].shape[1]), np.float32)
    mask = np.zeros((len(sequences), length), bool)
    for row, s in enumerate(sequences):
        out[row, :len(s)], mask[row, :len(s)] = s, True
    return out, mask


def _batches(sequences, batch_size, rng):
    """Batches of similar length (little padding), in a new random grouping every epoch."""
    lengths = np.array([len(s) for s in sequences], np.float32)
    order = np.argsort(lengths + rng.uniform(0, 32, len(lengths)))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return [b for b in batches if len(b) > 1]


def _seeded_node_encoder(config, **kwargs):
    """Seeds Keras and returns (a new `NodeEncoder` of `config`, the seeded numpy generator
    of the batch order)."""
    import keras

    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    return NodeEncoder(config.num_queries, config.num_layers, config.num_heads,
                       config.intermediate_dim, config.node_dim, config.dropout,
                       pool_sequence=config.pool_sequence, **kwargs), rng


def train_node_encoder(sequences, targets, config, log=print):
    """Trains a `NodeEncoder` so that each movie's node vector finds its own row of every
    target among the movies of a batch (symmetric InfoNCE, one small tower per target).

    Args:
        sequences: list of float (length_i, d) encoder outputs, one per movie.
        targets: dict name -> float32 (n, k) array, rows in the same movie order (e.g.
            "graph": standardized rating-graph features, "text": sentence embeddings).
        config: `NodeConfig`.
        log: callable taking a str.

    Returns:
        (the trained `NodeEncoder`, list of the epochs' mean losses).
    """
    import keras
    import tensorflow as tf

    node_encoder, rng = _seeded_node_encoder(config)
    names = sorted(targets)
    towers = {name: keras.Sequential([keras.layers.Dense(256, activation="relu"),
                                      keras.layers.Dense(config.node_dim)], name=f"{name}_tower")
              for name in names}
    optimizer = keras.optimizers.Adam(config.learning_rate)

    def info_nce(a, b):
        logits = tf.matmul(a, b, transpose_b=True) / config.temperature
        labels = tf.range(tf.shape(logits)[0])
        return 0.5 * (tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels, logits)) + tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels, tf.transpose(logits))))

    @tf.function(reduce_retracing=True)
    def step(sequence, mask, rows):
        with tf.GradientTape() as tape:
            node = tf.math.l2_normalize(node_encoder(sequence, mask, training=True), -1)
            loss = tf.add_n([info_nce(node, tf.math.l2_normalize(
                towers[name](rows[name], training=True), -1)) for name in names])
        weights = node_encoder.trainable_weights + [
            w for name in names for w in towers[name].trainable_weights]
        optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return loss

    losses = []
    for epoch in range(config.epochs):
        epoch_losses = []
        for index in _batches(sequences, config.batch_size, rng):
            sequence, mask = _pad([sequences[i] for i in index])
            rows = {name: targets[name][index] for name in names}
            epoch_losses.append(float(step(sequence, mask, rows)))
        losses.append(float(np.mean(epoch_losses)))
        log(f"node encoder epoch {epoch + 1}/{config.epochs}: contrastive loss "
            f"{losses[-1]:.4f} ({' + '.join(names)})")
    return node_encoder, losses


def train_graph_prior(sequences, target, rows, config, log=print):
    """Trains a `NodeEncoder` to predict each movie's unit-length spectral position in the
    rating graph from its text (loss: squared error summed over the k columns), on the
    movies `rows` only.

    A seeded tenth of `rows` is held out: after each epoch the held-out movies' mean squared
    error is measured, and the weights of the best epoch are kept (the decoder soon fits
    the movies it trains on better than new ones, and its vectors are used on new ones).

    Args:
        sequences: list of float (length_i, d) encoder outputs, one per movie.
        target: float32 (n, k) array, the movies' spectral positions (rows of unit length).
        rows: int array, the movies to learn from (movies with ratings).
        config: `NodeConfig`; its `node_dim` must be `k`.
        log: callable taking a str.

    Returns:
        (the trained `NodeEncoder`, list of the epochs' mean training losses, list of the
        epochs' held-out losses).
    """
    import keras
    import tensorflow as tf

    if config.node_dim != target.shape[1]:
        raise ValueError(f"node_dim {config.node_dim} differs from the {target.shape[1]} "
                         "spectral columns the graph prior predicts")
    # A zero projection starts from predicting 0 (error 1 per unit-length target), not
    # from random outputs of norm ~5 that take epochs to unlearn.
    node_encoder, rng = _seeded_node_encoder(config, projection_initializer="zeros")
    optimizer = keras.optimizers.Adam(config.learning_rate)

    @tf.function(reduce_retracing=True)
    def step(sequence, mask, goal):
        with tf.GradientTape() as tape:
            node = node_encoder(sequence, mask, training=True)
            loss = tf.reduce_mean(tf.reduce_sum(tf.square(node - goal), -1))
        weights = node_encoder.trainable_weights
        optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return loss

    rows = rng.permutation(np.asarray(rows))
    held_out, rows = rows[:max(1, len(rows) // 10)], rows[max(1, len(rows) // 10):]
    subset = [sequences[i] for i in rows]
    losses, held_out_losses, best = [], [], None
    for epoch in range(config.epochs):
        epoch_losses = []
        for index in _batches(subset, config.batch_size, rng):
            sequence, mask = _pad([subset[i] for i in index])
            epoch_losses.append(float(step(sequence, mask, target[rows[index]])))
        losses.append(float(np.mean(epoch_losses)))
        predicted = node_vectors(node_encoder, [sequences[i] for i in held_out])
        held_out_losses.append(float(np.mean(np.sum((predicted - target[held_out]) ** 2, 1))))
        if best is None or held_out_losses[-1] < held_out_losses[best]:
            best, best_weights = epoch, node_encoder.get_weights()
        log(f"node encoder epoch {epoch + 1}/{config.epochs}: squared error to the graph "
            f"position {losses[-1]:.4f} ({len(rows)} movies), held out "
            f"{held_out_losses[-1]:.4f} ({len(held_out)} movies)")
    node_encoder.set_weights(best_weights)
    log(f"node encoder: kept epoch {best + 1} (lowest held-out error)")
    return node_encoder, losses, held_out_losses


def cross_fit_graph_prior(sequences, target, ratings, config, log=print):
    """Graph-prior node vectors of every movie, cross-fitted: the movies are dealt into
    `config.folds` seeded folds, and each fold's vectors come from a `train_graph_prior`
    decoder trained on the other folds' movies with at least `config.min_ratings` ratings.

    Returns:
        (float32 (n, k) node vectors, per fold the epochs' training losses, per fold the
        epochs' held-out losses).
    """
    fold = np.random.default_rng(config.seed).permutation(len(sequences)) % config.folds
    out = np.zeros((len(sequences), target.shape[1]), np.float32)
    losses, held_out = [], []
    for f in range(config.folds):
        rows = np.flatnonzero((fold != f) & (ratings >= config.min_ratings - 0.5))
        if len(rows) < 2:
            raise ValueError(f"only {len(rows)} movies with >= {config.min_ratings} ratings "
                             f"outside fold {f + 1}; lower min_ratings or folds")
        log(f"fold {f + 1}/{config.folds}: learning from {len(rows)} movies")
        node_encoder, fold_losses, fold_held_out = train_graph_prior(
            sequences, target, rows, dataclasses.replace(config, seed=config.seed + f), log)
        members = np.flatnonzero(fold == f)
        out[members] = node_vectors(node_encoder, [sequences[i] for i in members])
        losses.append(fold_losses)
        held_out.append(fold_held_out)
    return out, losses, held_out


def node_vectors(node_encoder, sequences, batch_size=256):
    """The trained encoder's node embedding of every sequence (inference, no dropout)."""
    out = np.zeros((len(sequences), node_encoder.node_dim), np.float32)
    order = np.argsort([len(s) for s in sequences])
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        sequence, mask = _pad([sequences[i] for i in index])
        out[index] = np.asarray(node_encoder(sequence, mask, training=False))
    return out


def inputs_hash(texts, graph, preset_files, config):
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    digest.update(np.ascontiguousarray(graph, np.float32).tobytes())
    digest.update(json.dumps({"preset": preset_files, "config": dataclasses.asdict(config)},
                             sort_keys=True).encode())
    return digest.hexdigest()


def read_metadata(output_dir):
    path = os.path.join(output_dir, METADATA)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_node_embeddings(output_dir, movie_ids, embeddings, metadata):
    """Writes the three files into `output_dir` through a temporary folder and renames, so
    an interrupted run never leaves a half-written set."""
    if not np.isfinite(embeddings).all():
        raise ValueError("node embeddings hold NaN or infinite values; not written")
    with staged_directory(output_dir) as staging:
        np.save(os.path.join(staging, EMBEDDINGS), embeddings.astype(np.float32))
        np.save(os.path.join(staging, IDS), np.asarray(movie_ids, np.int64))
        with open(os.path.join(staging, METADATA), "w") as f:
            json.dump(metadata, f, indent=1)
    return os.path.join(output_dir, EMBEDDINGS)
