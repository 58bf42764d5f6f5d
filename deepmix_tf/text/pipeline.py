"""From the movie table and the rating graph to `node_embeddings.npy`, cached."""

import dataclasses
import os
import time

import numpy as np

from deepmix_tf.data import locate, movielens, tfrecords
from deepmix_tf.models.stacking import standardize
from deepmix_tf.text import node_embeddings as nodes
from deepmix_tf.text.movie_text import movie_texts, text_fields


def _preset_files(preset):
    import hashlib

    out = {}
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        digest = hashlib.md5()
        with open(os.path.join(preset, name), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        out[name] = digest.hexdigest()
    return out


def encode_nodes(data_dir, dataset_dir, output_dir, task="rating", preset=None, config=None,
                 force=False, log=print, progress=True):
    """Makes (or reuses) the movie node embeddings of a task.

    Args:
        data_dir: data root holding `rel-movielens1m/` (the movie table with text).
        dataset_dir: a TFRecord build (`<tfrecord_dir>/<protocol>`): its rating-graph table
            of `task` is the contrastive target.
        output_dir: folder of `node_embeddings.npy`, `node_embeddings.ids.npy` and
            `node_embeddings.json`.
        task: "rating" (texts include genres) or "genre" (texts never include genres).
        preset: encoder folder, default the installed all-MiniLM-L6-v2.
        config: `NodeConfig` or None.
        force: rebuild even when inputs are unchanged.

    Returns:
        The path of `node_embeddings.npy`.
    """
    from deepmix_tf.text.sentence_encoder import SentenceEncoder, default_preset

    config = config or nodes.NodeConfig()
    preset = os.path.abspath(preset or default_preset())
    movies = movielens.read_movies_csv(
        os.path.join(locate.rel_movielens1m_dir(data_dir), "regression", "movies.csv"))
    fields = text_fields(task)
    texts = movie_texts(movies, fields)
    movie_ids = movies["movie_id"].to_numpy(np.int64)
    graph_ids, graph_values = tfrecords.load_dense_table(dataset_dir, task)
    graph = np.zeros((len(movie_ids), graph_values.shape[1]), np.float32)
    position = {m: i for i, m in enumerate(graph_ids.tolist())}
    rows = [position.get(m, -1) for m in movie_ids.tolist()]
    table = standardize(graph_values)[1:]
    for i, r in enumerate(rows):
        if r >= 0:
            graph[i] = table[r]
    preset_md5 = _preset_files(preset)  # hashes ~90 MB of weights: once
    digest = nodes.inputs_hash(texts, graph, preset_md5, config)
    existing = nodes.read_metadata(output_dir)
    if not force and existing and existing.get("inputs_sha256") == digest:
        log(f"{output_dir} is up to date (same texts, graph, encoder and settings); reused")
        return os.path.join(output_dir, nodes.EMBEDDINGS)

    encoder = SentenceEncoder(preset, sequence_length=config.sequence_length)
    bar = _progress_bar(len(texts), "encoding movie texts") if progress else None
    start = time.perf_counter()
    sequences, sentences = nodes.encode_sequences(encoder, texts, progress=bar)
    encode_seconds = time.perf_counter() - start
    log(f"encoded {len(texts)} movie texts in {encode_seconds:.1f} s")
    available = {"graph": graph, "text": sentences}
    unknown = set(config.targets) - set(available)
    if unknown:
        raise ValueError(f"unknown node targets {sorted(unknown)}; known: {sorted(available)}")
    node_encoder, losses = nodes.train_node_encoder(
        sequences, {name: available[name] for name in config.targets}, config, log=log)
    embeddings = nodes.node_vectors(node_encoder, sequences)
    metadata = {
        "task": task,
        "encoder": {"preset": preset, "files_md5": preset_md5,
                    "sequence_length": config.sequence_length},
        "text_fields": list(fields),
        "example_text": texts[0],
        "movies": len(movie_ids),
        "node_dim": config.node_dim,
        "config": dataclasses.asdict(config),
        "training": {"objective": "symmetric InfoNCE of the node vector against each "
                                  f"target: {list(config.targets)} (graph: movie_graph of "
                                  f"{dataset_dir}; text: frozen sentence embedding)",
                     "epoch_losses": [round(x, 5) for x in losses]},
        "encode_seconds": round(encode_seconds, 1),
        "inputs_sha256": digest,
    }
    path = nodes.write_node_embeddings(output_dir, movie_ids, embeddings, metadata)
    log(f"wrote {path}: {embeddings.shape[0]} movies x {embeddings.shape[1]}")
    return path


def _progress_bar(total, title):
    import keras

    bar = keras.utils.Progbar(total, unit_name="text")
    print(title)
    return lambda done, _: bar.update(done)
