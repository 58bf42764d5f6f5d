"""DeepMix and its baselines: configuration, preprocessing and networks."""

import os

import keras
import numpy as np

from deepmix_tf import tasks
from deepmix_tf.data import tfrecords
from deepmix_tf.data.graph import graph_prior
from deepmix_tf.models.config import MODELS, Config
from deepmix_tf.models.preprocessing import build_preprocessor
from deepmix_tf.models.stacking import standardize
# Imported here, not on first use: importing keras_rs draws from Python's `random` (a
# default initializer argument), which made the first model built after a seed differ
# from every later one in the same process.
from deepmix_tf.models.networks import build_network


def load_tables(dataset_dir, config, meta=None):
    """The dense per-key tables a run uses: {name: (ids, standardized float32 (n + 1, d))}.
    Row 0 of each is the zero row of unknown keys.

    Node embeddings (`config.node_embeddings`) join the build's dense table: as extra
    columns, or with `config.node_prior` as the prior of its spectral columns."""
    meta = meta or tfrecords.read_metadata(dataset_dir)
    names = (sorted(meta["dense_tables"]) if config.dense_tables is None
             else list(config.dense_tables))
    unknown = sorted(set(names) - set(meta["dense_tables"]))
    if unknown:
        raise ValueError(f"unknown dense tables {unknown}; the build has "
                         f"{sorted(meta['dense_tables'])}")
    tables = {name: tfrecords.load_dense_table(dataset_dir, name, with_names=True)
              for name in names}
    if config.node_embeddings:
        if len(tables) != 1:
            raise ValueError(f"node embeddings join one dense table keyed by item; the run "
                             f"uses {sorted(tables)}")
        (name, (ids, values, columns)), = tables.items()
        node = np.load(config.node_embeddings)
        node_ids = np.load(os.path.splitext(config.node_embeddings)[0] + ".ids.npy")
        # Align node rows to the table's key order; absent keys get zeros.
        aligned = np.zeros((len(ids), node.shape[1]), np.float32)
        position = {m: i for i, m in enumerate(node_ids.tolist())}
        for row, m in enumerate(ids.tolist()):
            if m in position:
                aligned[row] = node[position[m]]
        if config.node_prior:
            try:
                values = graph_prior(values, columns, aligned, config.node_prior)
            except ValueError as e:
                raise ValueError(f"{config.node_embeddings}: {e}") from None
        else:
            values = np.concatenate([values, aligned], axis=1)
        tables[name] = (ids, values, columns)
    elif config.node_prior:
        raise ValueError("node_prior > 0 needs node_embeddings")
    return {name: (ids, standardize(values)) for name, (ids, values, _) in tables.items()}


def feature_names(config, meta):
    """The features a run uses: the configured ones, else the build's enabled ones."""
    known = [f["name"] for f in meta["features"]]
    names = config.features or [f["name"] for f in meta["features"] if f["enabled"]]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown features {unknown} for dataset {meta['dataset']!r}; "
                         f"known: {known}")
    return list(names)


def build_model(config, meta, tables=None):
    """Builds (preprocessor, network, full model) of a run on a build (its metadata).

    The network trains on preprocessed batches (XLA-compilable); the full model chains both
    and takes raw features: it is the one saved and exported.
    """
    tables = tables or {}
    task = tasks.make_task(meta["task"])
    preprocessor = build_preprocessor(meta, feature_names(config, meta),
                                      {name: ids for name, (ids, _) in tables.items()})
    network = build_network(preprocessor, config, meta, task,
                            {name: values for name, (_, values) in tables.items()})
    raw = {name: keras.Input(shape=t.shape[1:], dtype=t.dtype, name=name)
           for name, t in preprocessor.input.items()}
    full = keras.Model(raw, network(preprocessor(raw)), name=f"{config.model}_{task.name}")
    return preprocessor, network, full


def load_model(path):
    """Loads a `model.keras` written by training."""
    return keras.saving.load_model(path)  # our layers are registered by importing them


__all__ = ["MODELS", "Config", "build_model", "feature_names", "load_model", "load_tables"]
