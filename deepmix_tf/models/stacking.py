"""Deep Crossing's embedding and stacking layers, shared by DeepMix and its baselines (the
output layers belong to the tasks: `deepmix_tf.tasks`)."""

import zlib

import keras
import numpy as np

from deepmix_tf.layers.autodis import AutoDis
from deepmix_tf.layers.dimension_search import (DimensionSearchEmbedding,
                                               FrequencyBucketEmbedding)
from deepmix_tf.layers.dropout import Dropout
from deepmix_tf.layers.embedding import BagEmbedding, SparseEmbedding
from deepmix_tf.models.preprocessing import row_input


@keras.saving.register_keras_serializable(package="deepmix_tf")
class DenseTable(keras.layers.Layer):
    """Row lookup in a fixed (non-trainable) table; row 0 is the all-zeros unknown row.

    Args:
        rows: int. Table rows, including row 0.
        dim: int. Row width.
    """

    def __init__(self, rows, dim, **kwargs):
        super().__init__(**kwargs)
        self.rows, self.dim = rows, dim

    def build(self, input_shape):
        self.table = self.add_weight(shape=(self.rows, self.dim), initializer="zeros",
                                     trainable=False, name="table")

    def call(self, index):
        return keras.ops.take(self.table, index, axis=0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.dim,)

    def get_config(self):
        return {**super().get_config(), "rows": self.rows, "dim": self.dim}


def model_inputs(preprocessor):
    """Keras Inputs matching the preprocessor's outputs (the network's inputs)."""
    inputs = {}
    for name, tensor in preprocessor.output.items():
        inputs[name] = keras.Input(shape=tensor.shape[1:], dtype=tensor.dtype, name=name)
    return inputs


def embedding_rows(feature):
    """Rows of a categorical feature's embedding table: its OOV indices and vocabulary, or
    its hash buckets."""
    if feature.get("hash_buckets"):
        return feature["hash_buckets"]
    if feature.get("identity"):
        return feature["identity"] + feature["num_oov_indices"]
    return len(feature["vocabulary"]) + feature["num_oov_indices"]


def embed(inputs, meta, config, tables=None):
    """Embedding layer of Deep Crossing: one vector per feature.

    Args:
        inputs: the preprocessed inputs (`model_inputs`).
        meta: the build's metadata (its features, in order).
        tables: {dense table name: standardized float32 (rows + 1, d)} or None.

    With `config.embedding_buckets` > 1, `meta["frequency_buckets"]` gives each single-id
    categorical field's rows' buckets (`trainer.frequency_buckets`).

    Returns:
        (embeddings: list of (batch, width) tensors, one per categorical and multi-hot
        feature (width: `embedding_dims`' (its largest, per bucket) or `embedding_dim`),
        then one per embedded numeric
        input (`Config.numeric_embedding`); dense: (batch, d) tensor of the other numeric
        features and dense table columns, or None).
    """
    regularizer = l2_regularizer(config)
    # SGD updates only the rows of the batch when tables are gathered from as variables,
    # without an L2 penalty on whole tables.
    sparse = config.optimizer == "sgd"
    table_regularizer = None if sparse else regularizer
    embedding_cls = SparseEmbedding if sparse else keras.layers.Embedding
    widths = config.embedding_dims or {}
    unknown = sorted(set(widths) - {f["name"] for f in meta["features"] if f["name"] in inputs
                                    and f["type"] in ("categorical", "multi_hot")})
    if unknown:
        raise ValueError(f"embedding_dims names {unknown}, which are not embedded features "
                         "of this model")
    embedded_numeric = embedded_numeric_names(inputs, meta, config)
    buckets = (meta.get("frequency_buckets") or {}) if config.uses_frequency_buckets() else {}
    if config.uses_frequency_buckets():
        single = [f["name"] for f in meta["features"]
                  if f["name"] in inputs and f["type"] == "categorical"]
        missing = sorted(set(single) - set(buckets))
        if missing:
            raise ValueError(f"embedding_buckets={config.embedding_buckets} needs the rows' "
                             f"frequency buckets of {missing} (`trainer.frequency_buckets`)")
    lists = sorted(n for n, w in widths.items() if isinstance(w, list) and n not in buckets)
    if lists:
        raise ValueError(f"embedding_dims gives {lists} a width per frequency bucket; only "
                         "single-id categorical fields have buckets")
    embeddings, dense = [], []
    for f in meta["features"]:
        if f["name"] not in inputs:
            continue
        x = inputs[f["name"]]
        width = widths.get(f["name"], config.embedding_dim)
        bag = f["type"] == "multi_hot" and f["dtype"] == "int64_list"
        bucket_of = buckets.get(f["name"])
        bucket_rows = (np.bincount(bucket_of, minlength=config.embedding_buckets).tolist()
                       if bucket_of is not None else None)
        if config.embedding_search == "search" and (f["type"] == "categorical" or bag):
            layer = DimensionSearchEmbedding(
                embedding_rows(f), config.embedding_candidates, config.embedding_dim,
                share_weights=config.embedding_share,
                temperature=config.search_temperature[0],
                # A seed per field: each draws its own Gumbel noise.
                seed=config.seed + zlib.crc32(f["name"].encode()) % 100_000,
                embeddings_regularizer=table_regularizer,
                pooling=f["pooling"] if bag else None, bucket_rows=bucket_rows,
                name=f"{f['name']}_embedding")
            embeddings.append(layer(x))
            if bucket_rows:
                layer.set_buckets(bucket_of)
        elif isinstance(width, list):
            layer = FrequencyBucketEmbedding(bucket_rows, width,
                                             embeddings_regularizer=table_regularizer,
                                             maps_regularizer=regularizer,
                                             name=f"{f['name']}_embedding")
            embeddings.append(layer(x))
            layer.set_buckets(bucket_of)
        elif f["type"] == "categorical":
            layer = embedding_cls(embedding_rows(f), width,
                                  embeddings_regularizer=table_regularizer,
                                  name=f"{f['name']}_embedding")
            embeddings.append(layer(x))
        elif f["type"] == "multi_hot" and f["dtype"] == "int64_list":
            embeddings.append(BagEmbedding(
                embedding_rows(f), width, pooling=f["pooling"],
                embeddings_regularizer=table_regularizer, name=f"{f['name']}_embedding")(x))
        elif f["type"] == "multi_hot":
            if f.get("pooling") == "mean":
                x = x / keras.ops.maximum(keras.ops.sum(x, axis=-1, keepdims=True), 1.0)
            # A linear map of a multi-hot vector is the sum of its items' embeddings.
            embeddings.append(keras.layers.Dense(
                width, use_bias=False, kernel_regularizer=regularizer,
                name=f"{f['name']}_embedding")(x))
        elif f["type"] == "numeric" and f["name"] not in embedded_numeric:
            dense.append(keras.ops.expand_dims(x, -1))
    values = {n: inputs[n] for n in embedded_numeric if n in inputs}
    for name, table in (tables or {}).items():
        layer = DenseTable(table.shape[0], table.shape[1], name=f"{name}_table")
        row = layer(inputs[row_input(name)])
        layer.set_weights([table])
        columns = meta.get("table_columns", {}).get(name, [])
        chosen = [i for i, c in enumerate(columns) if f"{name}/{c}" in embedded_numeric]
        for i in chosen:  # table columns embedded like numeric features
            values[f"{name}/{columns[i]}"] = row[:, i]
        rest = [i for i in range(table.shape[1]) if i not in chosen]
        if rest:
            dense.append(row if not chosen else keras.ops.take(row, rest, axis=1))
    embeddings += numeric_embeddings(values, embedded_numeric, meta, config)
    dense = (keras.layers.Concatenate(name="dense_features")(dense) if len(dense) > 1
             else dense[0] if dense else None)
    return embeddings, dense


def embedded_numeric_names(inputs, meta, config):
    """The numeric inputs that get an embedding (`Config.numeric_embedding`), in order:
    numeric features, then dense-table columns ("<table>/<column>", named in
    `meta["table_columns"]`)."""
    if config.numeric_embedding == "raw":
        return []
    numeric = [f["name"] for f in meta["features"]
               if f["name"] in inputs and f["type"] == "numeric"]
    columns = [f"{t}/{c}" for t, names in meta.get("table_columns", {}).items()
               if row_input(t) in inputs for c in names]
    if config.numeric_fields is None:
        return numeric
    unknown = sorted(set(config.numeric_fields) - set(numeric) - set(columns))
    if unknown:
        raise ValueError(f"numeric_fields names {unknown}, which are not numeric inputs of "
                         f"this model; they are {numeric} and the dense-table columns "
                         f"{columns or '(none named: trainer.table_columns)'}")
    return [n for n in numeric + columns if n in config.numeric_fields]


def numeric_embeddings(inputs, names, meta, config):
    """One (batch, embedding_dim) vector per numeric input of `names` (`inputs`: name ->
    (batch,) values): AutoDis, or an embedding of its equal-frequency bucket (boundaries:
    `meta["numeric_boundaries"]`; numeric features only)."""
    if not names:
        return []
    if config.numeric_embedding == "autodis":
        values = keras.layers.Concatenate(name="autodis_inputs")(
            [keras.ops.expand_dims(inputs[n], -1) for n in names]) if len(names) > 1 \
            else keras.ops.expand_dims(inputs[names[0]], -1)
        vectors = AutoDis(config.numeric_buckets, config.embedding_dim,
                          temperature=config.autodis_temperature, skip=config.autodis_skip,
                          embeddings_regularizer=l2_regularizer(config), name="autodis")(values)
        return [vectors[:, i, :] for i in range(len(names))]
    boundaries = meta.get("numeric_boundaries") or {}
    missing = [n for n in names if n not in boundaries]
    if missing:
        raise ValueError(f"numeric_embedding='buckets' needs the training split's bucket "
                         f"boundaries of {missing} (`trainer.numeric_boundaries`)")
    out = []
    for n in names:
        safe = n.replace("/", "_")
        index = keras.layers.Discretization(bin_boundaries=boundaries[n],
                                            name=f"{safe}_buckets")(inputs[n])
        out.append(keras.layers.Embedding(len(boundaries[n]) + 1, config.embedding_dim,
                                          embeddings_regularizer=l2_regularizer(config),
                                          name=f"{safe}_bucket_embedding")(index))
    return out


def common_width(embeddings, names, config):
    """The embeddings at `config.embedding_dim`: those of another width (`embedding_dims`)
    through a linear map, for the layers that need one width (DLRM's dot products, AutoFIS,
    AutoGroup)."""
    return [e if e.shape[-1] == config.embedding_dim else keras.layers.Dense(
        config.embedding_dim, use_bias=False, kernel_regularizer=l2_regularizer(config),
        name=f"{name}_to_common")(e) for e, name in zip(embeddings, names)]


def embedding_parameters(model):
    """Weights of the model's embeddings: the `<feature>_embedding` layers' tables (and
    maps), the `<feature>_to_common` maps and AutoDis."""
    return int(sum(int(np.prod(w.shape)) for layer in model._flatten_layers(include_self=False)
                   if layer.name.endswith(("_embedding", "_to_common"))
                   or isinstance(layer, AutoDis) for w in layer.trainable_weights))


def stack(embeddings, dense):
    """Stacking layer of Deep Crossing: all features side by side in one vector."""
    parts = embeddings + ([dense] if dense is not None else [])
    return keras.layers.Concatenate(name="stacking")(parts) if len(parts) > 1 else parts[0]


def mlp(x, units, config, name):
    for i, width in enumerate(units):
        x = keras.layers.Dense(width, activation=config.activation,
                               kernel_regularizer=l2_regularizer(config), name=f"{name}_{i}")(x)
        if config.dropout:
            x = Dropout(config.dropout, name=f"{name}_dropout_{i}")(x)
    return x


def l2_regularizer(config):
    """The configured L2 penalty, or None when `config.l2` is 0."""
    return keras.regularizers.L2(config.l2) if config.l2 else None


def standardize(table):
    """Zero-mean unit-variance columns (constant columns stay 0), with a zero row 0 prepended."""
    table = np.asarray(table, dtype=np.float32)
    std = table.std(axis=0)
    table = (table - table.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return np.concatenate([np.zeros((1, table.shape[1]), np.float32), table]).astype(np.float32)
