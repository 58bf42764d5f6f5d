"""DeepMix and its baselines: configuration, preprocessing and networks."""

import os

import keras
import numpy as np

from deepmix_tf.data import schema, tfrecords
from deepmix_tf.data.graph import graph_prior
from deepmix_tf.models.config import MODELS, Config
from deepmix_tf.models.preprocessing import build_preprocessor
from deepmix_tf.models.stacking import standardize
# Imported here, not on first use: importing keras_rs draws from Python's `random` (a
# default initializer argument), which made the first model built after a seed differ
# from every later one in the same process.
from deepmix_tf.models.networks import build_network


def load_tables(dataset_dir, config):
    """The dense per-movie table a run uses: (movie_ids, standardized float32 (n + 1, d)),
    or None. Row 0 is the zero row of unknown movies."""
    if not config.dense_tables:
        return None
    parts, ids = [], None
    if "movie_graph" in config.dense_tables:
        ids, values, names = tfrecords.load_dense_table(dataset_dir, config.task,
                                                        with_names=True)
        parts.append(values)
    if "node" in config.dense_tables:
        if not config.node_embeddings:
            raise ValueError("dense_tables has 'node' but no node_embeddings path is set")
        node = np.load(config.node_embeddings)
        node_ids = np.load(os.path.splitext(config.node_embeddings)[0] + ".ids.npy")
        if ids is None:
            ids, aligned = node_ids, node
        else:
            # Align node rows to the graph table's movie order; absent movies get zeros.
            aligned = np.zeros((len(ids), node.shape[1]), np.float32)
            position = {m: i for i, m in enumerate(node_ids.tolist())}
            for row, m in enumerate(ids.tolist()):
                if m in position:
                    aligned[row] = node[position[m]]
        if config.node_prior:
            if "movie_graph" not in config.dense_tables:
                raise ValueError("node_prior > 0 needs the 'movie_graph' dense table")
            try:
                parts[0] = graph_prior(parts[0], names, aligned, config.node_prior)
            except ValueError as e:
                raise ValueError(f"{config.node_embeddings}: {e}") from None
        else:
            parts.append(aligned)
    unknown = set(config.dense_tables) - {"movie_graph", "node"}
    if unknown:
        raise ValueError(f"unknown dense tables {sorted(unknown)}; expected 'movie_graph', 'node'")
    return ids, standardize(np.concatenate(parts, axis=1))


def feature_names(config):
    """The raw features a run uses: the configured ones, else the schema's enabled ones."""
    names = config.features or [f.name for f in schema.features(config.task) if f.enabled
                                and f.kind != schema.KEY]
    known = {f.name for f in schema.features(config.task)}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(f"unknown features {unknown} for task {config.task!r}; "
                         f"known: {sorted(known)}")
    return list(names)


def build_model(config, task_meta, tables=None):
    """Builds (preprocessor, network, full model) of a run.

    The network trains on preprocessed batches (XLA-compilable); the full model chains both
    and takes raw features: it is the one saved and exported.
    """
    vocabularies = task_meta["vocabularies"]
    movie_ids, table = tables if tables is not None else (None, None)
    preprocessor = build_preprocessor(config.task, feature_names(config), vocabularies,
                                      movie_ids)
    mean = task_meta.get("label_mean", 3.5)
    network = build_network(preprocessor, config, vocabularies, table,
                            rating_mean=mean if config.task == "rating" else 3.5)
    raw = {name: keras.Input(shape=(), dtype=t.dtype, name=name)
           for name, t in preprocessor.input.items()}
    full = keras.Model(raw, network(preprocessor(raw)), name=f"{config.model}_{config.task}")
    return preprocessor, network, full


def load_model(path):
    """Loads a `model.keras` written by training."""
    return keras.saving.load_model(path)  # our layers are registered by importing them


__all__ = ["MODELS", "Config", "build_model", "feature_names", "load_model", "load_tables"]
