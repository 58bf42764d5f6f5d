"""DeepMix and its baselines as functional Keras models over preprocessed inputs.

Each builder reads like its paper's diagram: embedding -> stacking -> interaction -> scoring.
"""

import keras
import keras_rs

from deepmix_tf.layers import (AutoGroup, CrossNetMix, DeepCrossingResidualUnit,
                               GatedInteraction, ResidualBlock)
from deepmix_tf.models.stacking import (common_width, embed, embedded_numeric_names,
                                        embedding_rows, l2_regularizer, mlp, model_inputs,
                                        stack)


def deepmix(inputs, x0, config):
    """DeepMix: DNN residual blocks and CrossNetMix over the stacked features.

    `combine="stacked"` follows the paper: residual blocks, CrossNetMix, scoring MLP.
    `combine="parallel"` runs the residual blocks and CrossNetMix on the stacked vector and
    the scoring MLP on their concatenated outputs. `combine="towers"` is DCN-V2's parallel
    structure: CrossNetMix beside a deep tower (residual blocks, then the scoring MLP),
    their outputs concatenated into the output layer; its MLP reads the stacked width
    instead of twice it.
    """
    x = x0
    for i in range(config.residual_blocks):
        x = ResidualBlock(width_multiplier=config.residual_width, depth=config.residual_depth,
                          normalization=config.normalization, dropout=config.dropout,
                          activation=config.activation,
                          kernel_regularizer=l2_regularizer(config), name=f"residual_block_{i}")(x)
    cross = CrossNetMix(num_layers=config.cross_layers, num_experts=config.num_experts,
                        low_rank=config.low_rank, activation=config.cross_activation,
                        kernel_regularizer=l2_regularizer(config), name="cross_net_mix")
    if config.combine == "stacked":
        x = cross(x)
    elif config.combine == "parallel":
        x = keras.layers.Concatenate(name="combine")([cross(x0), x])
    x = mlp(x, config.head_units, config, "scoring")
    if config.combine == "towers":
        x = keras.layers.Concatenate(name="combine")([cross(x0), x])
    return x


def deep_crossing(inputs, x0, config):
    """Deep Crossing (Shan et al., KDD 2016): a chain of its two-layer residual units."""
    x = x0
    width = int(round(config.residual_width * x0.shape[-1]))
    for i in range(max(1, config.residual_blocks)):
        x = DeepCrossingResidualUnit(hidden_units=width, name=f"residual_unit_{i}")(x)
    return x


def dcn_v2(inputs, x0, config):
    """DCN-V2 (Wang et al., WWW 2021), stacked: low-rank cross layers, then a deep MLP."""
    x = x0
    for i in range(config.cross_layers):
        x = keras_rs.layers.FeatureCross(projection_dim=config.low_rank,
                                         kernel_regularizer=l2_regularizer(config),
                                         name=f"feature_cross_{i}")(x0, x)
    return mlp(x, config.head_units, config, "deep")


NETWORKS = {"deepmix": deepmix, "deep_crossing": deep_crossing, "dcn_v2": dcn_v2}


def build_network(preprocessor, config, meta, task, tables=None):
    """The trainable network over the preprocessor's outputs.

    Args:
        preprocessor: the model from `build_preprocessor` (its outputs are our inputs).
        config: a `Config`.
        meta: the build's metadata (features with vocabulary sizes).
        task: the `deepmix_tf.tasks.Task`: it makes the output layer.
        tables: {dense table name: standardized float32 (rows + 1, d)} or None.

    Returns:
        A `keras.Model` from preprocessed inputs to the task's outputs (batch,) or
        (batch, outputs).
    """
    inputs = model_inputs(preprocessor)
    embeddings, dense = embed(inputs, meta, config, tables)
    if config.model == "biases":
        return _biases(inputs, meta, config, task)
    one_width = config.model == "dlrm" or config.autofis != "off" or config.autogroup != "off"
    if one_width and config.embedding_dims:
        embeddings = common_width(embeddings, embedded_names(inputs, meta, config), config)
    gated = None
    if config.autofis != "off" or config.autogroup != "off":
        names = embedded_names(inputs, meta, config)
        if config.model == "dlrm" and dense is not None:
            names = ["bottom"] + names  # DLRM's interactions include its bottom MLP's vector
        gated = (gated_interaction(names, config) if config.autofis != "off"
                 else auto_group(names, config))
    if config.model == "dlrm":
        x = _dlrm(embeddings, dense, config, gated)
    elif config.model == "nas":
        from deepmix_tf.nas.network import nas_network

        # The searched widths are those of the field embeddings (they come first), not of
        # embedded numeric inputs (AutoDis, buckets: always embedding_dim).
        fields = embedded_names(inputs, meta, config)
        fields = fields[:len(fields) - len(embedded_numeric_names(inputs, meta, config))]
        x = nas_network(embeddings, dense, fields, config)
    else:
        x = stack(embeddings, dense)
        if gated is not None:
            x = keras.layers.Concatenate(name="stacking_with_interactions")([x, gated(embeddings)])
        x = NETWORKS[config.model](inputs, x, config)
    return keras.Model(inputs, task.head(x), name=config.model)


def embedded_names(inputs, meta, config):
    """The features `embed` makes a vector of, in its order."""
    return [f["name"] for f in meta["features"]
            if f["name"] in inputs and f["type"] in ("categorical", "multi_hot")] + \
        embedded_numeric_names(inputs, meta, config)


def gated_interaction(names, config):
    """AutoFIS's layer over the vectors of `names`, for `config.autofis_pairs` (names) or
    every pair."""
    pairs = None
    if config.autofis_pairs is not None:
        position = {name: i for i, name in enumerate(names)}
        unknown = sorted({n for pair in config.autofis_pairs for n in pair} - set(position))
        if unknown:
            raise ValueError(f"autofis_pairs name {unknown}, which have no vector here; "
                             f"the vectors are {names}")
        pairs = [sorted(position[n] for n in p) for p in config.autofis_pairs]
        if any(len(set(p)) < len(p) for p in pairs):
            raise ValueError(f"autofis_pairs pair a field with itself: {config.autofis_pairs}")
    return GatedInteraction(len(names), pairs=pairs, gate_values=config.autofis_gates,
                            field_names=names, order=config.autofis_order, name="autofis")


def auto_group(names, config):
    """AutoGroup's layer over the vectors of `names`: searched sets, or the fixed sets of
    `config.autogroup_groups` (names) for `autogroup="on"`."""
    if config.autogroup == "search":
        return AutoGroup(len(names), orders=config.autogroup_orders, sets=config.autogroup_sets,
                         temperature=config.search_temperature[0], field_names=names,
                         seed=config.seed, name="autogroup")
    position = {name: i for i, name in enumerate(names)}
    unknown = sorted({n for sets in config.autogroup_groups.values() for s in sets for n in s}
                     - set(position))
    if unknown:
        raise ValueError(f"autogroup_groups name {unknown}, which have no vector here; the "
                         f"vectors are {names}")
    groups = {int(p): [[position[n] for n in s] for s in sets]
              for p, sets in config.autogroup_groups.items()}
    return AutoGroup(len(names), groups=groups, field_names=names, seed=config.seed,
                     name="autogroup")


def _dlrm(embeddings, dense, config, gated=None):
    """DLRM (Naumov et al., 2019): bottom MLP on dense features, pairwise dot products of
    all feature vectors, then a top MLP. `gated`: AutoFIS's gated products or AutoGroup's
    set interactions instead of the plain products."""
    vectors = list(embeddings)
    if dense is not None:
        bottom = mlp(dense, config.bottom_units[:-1], config.replace(dropout=0.0), "bottom")
        bottom = keras.layers.Dense(config.embedding_dim, activation=config.activation,
                                    name="bottom_out")(bottom)
        vectors = [bottom] + vectors
    interactions = (gated(vectors) if gated is not None
                    else keras_rs.layers.DotInteraction(name="dot_interaction")(vectors))
    x = keras.layers.Concatenate(name="top_input")([vectors[0], interactions])
    return mlp(x, config.head_units, config, "top")


def _biases(inputs, meta, config, task):
    """A global bias plus a learned bias per value of each of `config.bias_features` (None:
    every categorical feature); with none, the task's constant outputs (label priors)."""
    features = {f["name"]: f for f in meta["features"] if f["type"] == "categorical"}
    names = [n for n in (features if config.bias_features is None else config.bias_features)
             if n in inputs]
    biases = [keras.layers.Embedding(embedding_rows(features[name]), task.outputs,
                                     embeddings_initializer="zeros",
                                     embeddings_regularizer=l2_regularizer(config),
                                     name=f"{name}_bias")(inputs[name]) for name in names]
    if not biases:
        # No input reaches the output: the outputs are learned constants.
        first = keras.ops.cast(next(iter(inputs.values())), "float32")
        first = first if len(first.shape) > 1 else keras.ops.expand_dims(first, -1)
        x = keras.ops.zeros_like(first[:, :1])
    else:
        x = keras.layers.Add(name="bias_sum")(biases) if len(biases) > 1 else biases[0]
    return keras.Model(inputs, task.head(x), name="biases")
