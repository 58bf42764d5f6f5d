"""Movie node embeddings: frozen pretrained encoder -> NodeEncoder trained self-supervised
against the rating graph -> `node_embeddings.npy`.

Why self-supervised: the decoder's queries are trained so that a movie's node vector picks
out that movie's own targets among the other movies of a batch (symmetric InfoNCE, as in
CLIP). The targets (`NodeConfig.targets`) are its rating-graph vector ("graph": what the
audience did) and its frozen sentence embedding ("text": what the text says, so the node
vector keeps the text's content instead of only re-deriving the graph, which the model
already has). No task label is used, so one procedure serves both tasks and can never leak
the genre labels of validation or test movies.
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

    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    node_encoder = NodeEncoder(config.num_queries, config.num_layers, config.num_heads,
                               config.intermediate_dim, config.node_dim, config.dropout)
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
