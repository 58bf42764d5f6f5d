"""From the item table (a spec's `text`) and the interaction graph to `node_embeddings.npy`,
cached."""

import dataclasses
import os
import time

import numpy as np

from deepmix_tf.data import readers, tfrecords
from deepmix_tf.data.spec import parse_spec
from deepmix_tf.models.stacking import standardize
from deepmix_tf.text import node_embeddings as nodes
from deepmix_tf.text.movie_text import movie_texts


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


def item_texts(spec, data_dir=None):
    """The item texts a spec declares (`text`: table, key, fields): (ids, texts, fields)."""
    if not spec.text:
        raise ValueError(f"{spec.path}: the spec declares no item text (\"text\")")
    table = readers.read_table(spec.tables[spec.text["table"]], spec.data_root(data_dir))
    fields = tuple(spec.text["fields"])
    return table[spec.text["key"]].to_numpy(np.int64), movie_texts(table, fields), fields


def encode_nodes(data_dir, dataset_dir, output_dir, preset=None, config=None,
                 force=False, log=print, progress=True):
    """Makes (or reuses) the item node embeddings of a build's dataset.

    Args:
        data_dir: data root of the spec's files (the item table with text).
        dataset_dir: a TFRecord build: its spec names the item texts (`text`, which never
            holds the label), and its interaction-graph table is the target (contrastive, or
            the spectral columns for `objective="graph_prior"`).
        output_dir: folder of `node_embeddings.npy`, `node_embeddings.ids.npy` and
            `node_embeddings.json`.
        preset: encoder folder, default the installed all-MiniLM-L6-v2.
        config: `NodeConfig` or None.
        force: rebuild even when inputs are unchanged.

    Returns:
        The path of `node_embeddings.npy`.
    """
    from deepmix_tf.text.sentence_encoder import SentenceEncoder, default_preset

    config = config or nodes.NodeConfig()
    preset = os.path.abspath(preset or default_preset())
    meta = tfrecords.read_metadata(dataset_dir)
    spec = parse_spec(meta["spec"], meta["spec_path"])
    movie_ids, texts, fields = item_texts(spec, data_dir)
    graph_ids, graph_values, graph_names = tfrecords.load_dense_table(dataset_dir,
                                                                       with_names=True)
    graph = np.zeros((len(movie_ids), graph_values.shape[1]), np.float32)
    raw = np.zeros_like(graph)
    position = {m: i for i, m in enumerate(graph_ids.tolist())}
    rows = [position.get(m, -1) for m in movie_ids.tolist()]
    table = standardize(graph_values)[1:]
    for i, r in enumerate(rows):
        if r >= 0:
            graph[i], raw[i] = table[r], graph_values[r]
    if config.objective == "graph_prior":
        spectral = [i for i, name in enumerate(graph_names) if name.startswith("svd_")]
        config = dataclasses.replace(config, node_dim=len(spectral))
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
    if config.objective == "graph_prior":
        ratings = np.expm1(raw[:, graph_names.index("log_count")])
        embeddings, losses, held_out = nodes.cross_fit_graph_prior(
            sequences, raw[:, spectral], ratings, config, log=log)
        objective = (f"squared error of the node vector to the movie's spectral position "
                     f"(svd_* of movie_graph of {dataset_dir}), cross-fitted over "
                     f"{config.folds} folds (a fold's vectors from a decoder trained on the "
                     f"other folds' movies with >= {config.min_ratings} ratings, a tenth of "
                     "them held out to pick the epoch)")
        training = {"objective": objective,
                    "fold_epoch_losses": [[round(x, 5) for x in f] for f in losses],
                    "fold_held_out_losses": [[round(x, 5) for x in f] for f in held_out]}
    else:
        available = {"graph": graph, "text": sentences}
        unknown = set(config.targets) - set(available)
        if unknown:
            raise ValueError(f"unknown node targets {sorted(unknown)}; known: "
                             f"{sorted(available)}")
        node_encoder, losses = nodes.train_node_encoder(
            sequences, {name: available[name] for name in config.targets}, config, log=log)
        embeddings = nodes.node_vectors(node_encoder, sequences)
        training = {"objective": (f"symmetric InfoNCE of the node vector against each "
                                  f"target: {list(config.targets)} (graph: movie_graph of "
                                  f"{dataset_dir}; text: frozen sentence embedding)"),
                    "epoch_losses": [round(x, 5) for x in losses]}
    metadata = {
        "dataset": meta["dataset"],
        "encoder": {"preset": preset, "files_md5": preset_md5,
                    "sequence_length": config.sequence_length},
        "text_fields": list(fields),
        "example_text": texts[0],
        "movies": len(movie_ids),
        "node_dim": config.node_dim,
        "config": dataclasses.asdict(config),
        "training": training,
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
