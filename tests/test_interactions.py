"""Interaction searches. AutoFIS: the GRDA optimizer, the gated interaction layer, the
search and the retrain. AutoGroup: the Gumbel-softmax relaxation, the feature-set layer, the
search on a held-out slice and the retrain."""

import json

import keras
import numpy as np
import pytest

from conftest import assert_reloads_equal

from deepmix_tf.data import generate as gen
from deepmix_tf.data import tfrecords
from deepmix_tf.layers import AutoGroup, GatedInteraction
from deepmix_tf.layers.gumbel import gumbel_softmax
from deepmix_tf.models import Config, build_model
from deepmix_tf.optimizers import GRDA, GatedAdam
from deepmix_tf.training import architecture, interactions, trainer


def _toy_regression(seed=0, n=4000):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 10)).astype("float32")
    w = np.zeros(10, np.float32)
    w[:2] = [1.5, -2.0]
    return x, x @ w + 0.1 * rng.normal(size=n).astype("float32")


def test_grda_sets_useless_weights_to_exact_zeros():
    x, y = _toy_regression()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(
        1, use_bias=False, kernel_initializer="zeros")])
    model.compile(GRDA(learning_rate=0.01, c=0.2, mu=0.7), "mse")
    model.fit(x, y, batch_size=32, epochs=8, verbose=0)
    w = model.layers[0].kernel.numpy().ravel()
    assert (w[2:] == 0.0).all(), w
    np.testing.assert_allclose(w[:2], [1.5, -2.0], atol=0.2)
    # Without the threshold (c = 0) it is dual-averaged SGD: no weight is exactly 0.
    keras.utils.set_random_seed(0)
    plain = keras.Sequential([keras.Input((10,)), keras.layers.Dense(
        1, use_bias=False, kernel_initializer="zeros")])
    plain.compile(GRDA(learning_rate=0.01, c=0.0), "mse")
    plain.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert (plain.layers[0].kernel.numpy() != 0).all()


@pytest.mark.parametrize("optimizer", [GRDA(0.02, c=0.3, mu=0.8),
                                       GatedAdam(0.002, gate_learning_rate=0.1, c=0.2, mu=0.6)])
def test_the_optimizers_are_registered_and_serialisable(optimizer, tmp_path):
    again = keras.optimizers.deserialize(json.loads(json.dumps(
        keras.optimizers.serialize(optimizer))))
    assert type(again) is type(optimizer) and again.get_config() == optimizer.get_config()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer, "mse")
    model.fit(np.ones((8, 3)), np.ones(8), verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer) is type(optimizer)


@pytest.mark.parametrize("bad", [dict(c=-1.0), dict(mu=0.5), dict(mu=1.0)])
def test_grda_refuses_bad_settings(bad):
    with pytest.raises(ValueError, match="GRDA"):
        GRDA(**bad)


def _fields(batch=16, fields=4, dim=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch, dim)).astype("float32") for _ in range(fields)]


def test_gated_interaction_is_gated_inner_products_of_the_chosen_pairs():
    e = _fields()
    layer = GatedInteraction(4, pairs=[[0, 1], [2, 3]], gate_values=[0.5, -2.0],
                             batch_norm=False)
    out = np.asarray(layer(e))
    expected = np.stack([0.5 * (e[0] * e[1]).sum(1), -2.0 * (e[2] * e[3]).sum(1)], 1)
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    every = GatedInteraction(4, batch_norm=False)
    assert every.pairs == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    assert np.asarray(every(e)).shape == (16, 6)
    with pytest.raises(ValueError, match="pairs must be"):
        GatedInteraction(4, pairs=[[1, 1]])
    with pytest.raises(ValueError, match="gate values"):
        GatedInteraction(4, pairs=[[0, 1]], gate_values=[1.0, 2.0])


def test_third_order_gates_products_of_triples_beside_the_pairs():
    e = _fields(fields=4)
    every = GatedInteraction(4, order=3, batch_norm=False)
    assert len(every.pairs) == 6 + 4 and every.pairs[6:] == [[0, 1, 2], [0, 1, 3], [0, 2, 3],
                                                             [1, 2, 3]]
    layer = GatedInteraction(4, pairs=[[0, 2, 3], [1, 2]], gate_values=[2.0, 0.5],
                             batch_norm=False, order=3)
    expected = np.stack([2.0 * (e[0] * e[2] * e[3]).sum(1), 0.5 * (e[1] * e[2]).sum(1)], 1)
    np.testing.assert_allclose(np.asarray(layer(e)), expected, rtol=1e-5)
    again = GatedInteraction.from_config(layer.get_config())
    assert again.order == 3 and again.pairs == [[0, 2, 3], [1, 2]]
    with pytest.raises(ValueError, match="order=2"):
        GatedInteraction(4, pairs=[[0, 1, 2]])


def test_gated_adam_gives_the_gates_to_grda_and_the_rest_to_adam():
    inputs = [keras.Input((3,)) for _ in range(3)]
    gated = GatedInteraction(3, name="autofis")
    model = keras.Model(inputs, keras.layers.Dense(1)(gated(inputs)))
    optimizer = GatedAdam(0.01, gate_learning_rate=0.1, c=0.5)
    model.compile(optimizer, "mse")
    model.fit(_fields(64, 3), np.ones(64), batch_size=16, epochs=2, verbose=0)
    assert int(optimizer.gate_optimizer.iterations.numpy()) == 8
    # The gates are GRDA's soft threshold of its dual average.
    (accumulator,) = optimizer.gate_optimizer._accumulators
    threshold = 0.5 * 0.1 ** 1.2 * 8 ** 0.7
    a = accumulator.numpy()
    np.testing.assert_allclose(gated.gates.numpy(),
                               np.sign(a) * np.maximum(np.abs(a) - threshold, 0), atol=1e-6)


def test_a_saved_search_loads_back_the_gates_grda_state(tmp_path):
    import warnings

    inputs = [keras.Input((3,)) for _ in range(3)]
    model = keras.Model(inputs, keras.layers.Dense(1)(GatedInteraction(3, name="autofis")(
        inputs)))
    model.compile(GatedAdam(0.01, gate_learning_rate=0.1, c=0.5), "mse")
    model.fit(_fields(64, 3), np.ones(64), batch_size=16, epochs=2, verbose=0)
    model.save(tmp_path / "m.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Keras only warns when it skips optimizer state
        loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert [v.path for v in loaded.optimizer.variables] == [
        v.path for v in model.optimizer.variables]
    assert any("accumulator" in v.path for v in loaded.optimizer.variables)
    for saved, restored in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(saved.numpy(), restored.numpy())


def _meta(tmp_path, rows=20_000, seed=0):
    """A planted build: the label comes from the pairs (cat_0, cat_1) and (cat_2, cat_3)."""
    planted = gen.Planted(pairs=[["cat_0", "cat_1", 2.0], ["cat_2", "cat_3", 2.0]],
                          noise=0.1, dim=4)
    g = gen.Generator(gen.make_fields([100] * 8), num_dense=0, planted=planted, seed=seed)
    gen.write_dataset(str(tmp_path / "data"), g, rows, name="planted-pairs", log=lambda _: None)
    spec = str(tmp_path / "data" / "spec.json")
    build = tfrecords.build_tfrecords(spec, output_dir=str(tmp_path / "tf"), log=lambda _: None)
    return spec, build


def test_a_retrained_model_has_only_the_kept_pairs_and_round_trips(tmp_path):
    spec, build = _meta(tmp_path, rows=2_000)
    meta = tfrecords.read_metadata(build)
    config = Config(dataset=spec, model="deepmix", embedding_dim=4, autofis="on",
                    autofis_pairs=[["cat_3", "cat_2"], ["cat_0", "cat_5"]],
                    autofis_gates=[0.25, -0.5])
    _, _, full = build_model(config, meta)
    layer = interactions.find_layer(full)
    assert layer.pairs == [[2, 3], [0, 5]] and layer.field_names[:2] == ["cat_0", "cat_1"]
    np.testing.assert_allclose(layer.gates.numpy(), [0.25, -0.5])
    assert [p["fields"] for p in interactions.searched_pairs(full)] == [["cat_2", "cat_3"],
                                                                       ["cat_0", "cat_5"]]
    features = {k: v[:32] for k, v in tfrecords.read_examples(build, "test").items()
                if k in full.input}
    loaded = assert_reloads_equal(full, features, tmp_path / "m.keras")
    assert interactions.find_layer(loaded).pairs == [[2, 3], [0, 5]]
    with pytest.raises(ValueError, match="no vector here"):
        build_model(config.replace(autofis_pairs=[["cat_0", "nope"], ["cat_1", "cat_2"]]),
                    meta)


def test_the_retrain_config_keeps_the_non_zero_gates():
    pairs = [{"fields": ["a", "b"], "gate": 0.3, "kept": True},
             {"fields": ["a", "c"], "gate": 0.0, "kept": False},
             {"fields": ["b", "c"], "gate": -0.1, "kept": True}]
    config = interactions.retrain_config(Config(autofis="search"), pairs)
    assert config.autofis == "on"
    assert config.autofis_pairs == [["a", "b"], ["b", "c"]] and config.autofis_gates == [0.3,
                                                                                          -0.1]
    with pytest.raises(ValueError, match="zeroed every gate"):
        interactions.retrain_config(Config(), [pairs[1]])


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The 200,000-row planted build both searches are checked on."""
    return _meta(tmp_path_factory.mktemp("planted"), rows=200_000)


@pytest.mark.slow
def test_autofis_keeps_the_planted_pairs_and_drops_most_others(planted, tmp_path):
    spec, build = planted
    config = trainer.default_config(spec, "dlrm", autofis="search", epochs=6, grda_c=0.2,
                                    grda_learning_rate=0.1)
    trainer.train(config, dataset_dir=build, model_dir=str(tmp_path / "search"),
                  log=lambda _: None, verbose=0)
    model = keras.saving.load_model(tmp_path / "search" / "model.keras")
    pairs = interactions.write_search(str(tmp_path / "search"), model, config)
    kept = {tuple(p["fields"]) for p in pairs if p["kept"]}
    assert {("cat_0", "cat_1"), ("cat_2", "cat_3")} <= kept
    others = len(pairs) - 2
    assert len(kept - {("cat_0", "cat_1"), ("cat_2", "cat_3")}) <= 0.2 * others, kept
    assert (tmp_path / "search" / "interactions.png").stat().st_size > 0
    retrain = Config.from_json(str(tmp_path / "search" / "retrain_config.json"))
    assert sorted(map(tuple, retrain.autofis_pairs)) == sorted(kept)


# ------------------------------------------------------------------------------ AutoGroup


def test_gumbel_softmax_samples_approach_one_hot_draws_of_the_softmax():
    logits = keras.ops.convert_to_tensor(np.log([[0.6, 0.3, 0.1]] * 20_000).astype("float32"))
    cold = np.asarray(gumbel_softmax(logits, 0.01, seed=1))
    np.testing.assert_allclose(cold.sum(-1), 1.0, rtol=1e-5)
    assert (cold.max(-1) > 0.9).mean() > 0.95  # nearly one-hot
    np.testing.assert_allclose(np.bincount(cold.argmax(-1)) / len(cold), [0.6, 0.3, 0.1],
                               atol=0.015)
    hot = np.asarray(gumbel_softmax(logits, 100.0, seed=1))
    np.testing.assert_allclose(hot, 1 / 3, atol=0.05)  # nearly uniform
    variable = keras.Variable(np.zeros((4, 2), "float32"))
    import tensorflow as tf
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(gumbel_softmax(variable.value, 0.5, seed=0)[:, 1])
    assert np.abs(tape.gradient(y, variable.value).numpy()).min() > 0


def test_the_temperature_anneals_geometrically_from_start_to_end():
    steps = [architecture.temperature(e, 5, 1.0, 0.0625) for e in range(5)]
    np.testing.assert_allclose(steps, [1.0, 0.5, 0.25, 0.125, 0.0625])
    assert architecture.temperature(9, 5, 1.0, 0.0625) == pytest.approx(0.0625)
    assert architecture.temperature(0, 1, 2.0, 0.1) == 2.0


def test_auto_group_computes_each_orders_interactions_within_its_sets():
    e = _fields(batch=6, fields=4, dim=3)
    groups = {1: [[0], [1, 2]], 2: [[0, 1, 3], [2, 3]], 3: [[0, 1, 2]]}
    layer = AutoGroup(4, groups=groups, batch_norm=False)
    out = np.asarray(layer(e))
    assert out.shape == (6, 2 * 3 + 2 + 1) and layer.feature_sets() == groups
    np.testing.assert_allclose(out[:, :3], e[0], rtol=1e-5)
    np.testing.assert_allclose(out[:, 3:6], e[1] + e[2], rtol=1e-5)
    pairs = sum(2 * (e[i] * e[j]).sum(1) for i, j in [(0, 1), (0, 3), (1, 3)])
    np.testing.assert_allclose(out[:, 6], pairs, rtol=1e-4)
    np.testing.assert_allclose(out[:, 7], 2 * (e[2] * e[3]).sum(1), rtol=1e-4)
    cube = ((e[0] + e[1] + e[2]) ** 3 - e[0] ** 3 - e[1] ** 3 - e[2] ** 3).sum(1)
    np.testing.assert_allclose(out[:, 8], cube, rtol=1e-4, atol=1e-4)
    # Learned weights scale each field inside each set.
    layer.field_weights[1].assign(np.full((4, 2), 0.5, "float32"))
    np.testing.assert_allclose(np.asarray(layer(e))[:, 7], 0.5 * (e[2] * e[3]).sum(1),
                               rtol=1e-4)
    for bad in ({2: [[0, 0]]}, {2: [[]]}, {2: [[4]]}):
        with pytest.raises(ValueError, match="groups must"):
            AutoGroup(4, groups=bad)


def test_a_searching_auto_group_samples_relaxed_sets_and_infers_with_hard_ones():
    e = _fields(batch=8, fields=5, dim=4)
    layer = AutoGroup(5, orders=[2, 3], sets=2, batch_norm=False, seed=3)
    layer(e)
    assert [tuple(v.shape) for v in layer.structure] == [(5, 2, 2), (5, 2, 2)]
    assert not any(v.trainable for v in layer.structure)  # fit's optimizer leaves them
    first, second = np.asarray(layer(e, training=True)), np.asarray(layer(e, training=True))
    assert not np.allclose(first, second)  # fresh Gumbel noise each call
    # Inference takes each field's argmax (in where logit_in > logit_out).
    groups = {2: [[0, 1], [2, 3, 4]], 3: [[1, 3], [0, 4]]}
    for p, logits in zip(layer.orders, layer.structure):
        inside = np.zeros((5, 2), "float32")
        for j, members in enumerate(groups[p]):
            inside[members, j] = 1.0
        logits.assign(np.stack([1 - inside, inside], -1) * 0.3 + 0.1)
    assert layer.feature_sets() == groups
    fixed = AutoGroup(5, groups=groups, batch_norm=False)
    np.testing.assert_allclose(np.asarray(layer(e)), np.asarray(fixed(e)), rtol=1e-5)


def _group_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = [keras.Input((3,)) for _ in range(4)]
    group = AutoGroup(4, orders=[2], sets=2, seed=seed, name="autogroup")
    return keras.Model(inputs, keras.layers.Dense(1)(group(inputs))), group


def _batches(n, seed):
    e = _fields(n, 4, seed=seed)
    return e, (e[0] * e[1]).sum(1)


def test_the_architecture_search_moves_only_the_structure_on_held_out_batches():
    import tensorflow as tf

    model, group = _group_model()
    model.compile(keras.optimizers.Adam(0.01), "mse")
    x, y = _batches(256, seed=1)
    held_x, held_y = _batches(64, seed=2)
    held = tf.data.Dataset.from_tensor_slices((tuple(held_x), held_y)).batch(16).repeat()
    search = architecture.ArchitectureSearch(held, "mse", learning_rate=0.05, epochs=3,
                                             temperatures=(1.0, 0.25), warmup_epochs=1)
    seen = []
    structure = group.structure[0].numpy().copy()
    dense = model.layers[-1].kernel.numpy().copy()
    watch = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(
        (float(group.temperature.numpy()), group.structure[0].numpy().copy())))
    model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[search, watch])
    assert [t for t, _ in seen] == pytest.approx([1.0, 0.5, 0.25])  # annealed per epoch
    np.testing.assert_array_equal(seen[0][1], structure)  # the warm-up epoch left it
    assert np.abs(seen[2][1] - structure).max() > 1e-3  # then held-out steps moved it
    assert search.steps == 2 * 8  # one per training step after the warm-up
    assert np.abs(model.layers[-1].kernel.numpy() - dense).max() > 0  # fit trains the rest
    # A held-out step leaves the batch normalisation's moving statistics as they were.
    moving = [v for v in model.non_trainable_weights if "moving_" in v.path]
    before = [v.numpy().copy() for v in moving]
    search._step(*next(iter(held)))
    assert moving and all((v.numpy() == b).all() for v, b in zip(moving, before))
    # fit's optimizer never updates the structure: with no search, it stays put.
    model, group = _group_model()
    structure = group.structure[0].numpy().copy()
    model.compile(keras.optimizers.Adam(0.01), "mse")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    np.testing.assert_array_equal(group.structure[0].numpy(), structure)


def test_the_trainer_searches_on_a_held_out_slice_of_the_training_split(tmp_path):
    spec, build = _meta(tmp_path, rows=3_000)
    config = trainer.default_config(spec, "dlrm", autogroup="search", epochs=2,
                                    batch_size=256, holdout_every=4, patience=5)
    metrics = trainer.train(config, dataset_dir=build, model_dir=str(tmp_path / "search"),
                            log=lambda _: None, verbose=0)
    # One held-out step per training step after the warm-up epoch; the training steps
    # cover the rest of the training split only.
    rest = len(tfrecords.read_examples(build, "train", part="rest", holdout_every=4)["cat_0"])
    assert metrics["architecture_search"] == {"holdout_every": 4, "steps": -(-rest // 256)}
    model = keras.saving.load_model(tmp_path / "search" / "model.keras")
    groups = interactions.write_group_search(str(tmp_path / "search"), model, config)
    assert [(g["order"], g["set"]) for g in groups] == [(p, j) for p in (2, 3)
                                                        for j in range(4)]
    assert set(groups[0]["probabilities"]) == {f"cat_{i}" for i in range(8)}
    assert json.loads((tmp_path / "search" / "feature_sets.json").read_text())["sets"] == groups


def test_the_group_retrain_keeps_exactly_the_chosen_sets_and_round_trips(tmp_path):
    spec, build = _meta(tmp_path, rows=2_000)
    meta = tfrecords.read_metadata(build)
    sets = [{"order": 2, "set": 0, "fields": ["cat_0", "cat_1"]},
            {"order": 2, "set": 1, "fields": []},
            {"order": 3, "set": 0, "fields": ["cat_2", "cat_3", "cat_6"]}]
    config = interactions.group_retrain_config(
        Config(dataset=spec, model="deepmix", embedding_dim=4, autogroup="search"), sets)
    assert config.autogroup == "on"
    assert config.autogroup_groups == {"2": [["cat_0", "cat_1"]], "3": [["cat_2", "cat_3",
                                                                          "cat_6"]]}
    config = Config.from_json(_saved(config, tmp_path))  # JSON keys are strings
    _, _, full = build_model(config, meta)
    layer = interactions.find_layer(full, "autogroup", AutoGroup)
    assert layer.feature_sets() == {2: [[0, 1]], 3: [[2, 3, 6]]}
    assert [g["fields"] for g in interactions.searched_groups(full)] == [
        ["cat_0", "cat_1"], ["cat_2", "cat_3", "cat_6"]]
    features = {k: v[:32] for k, v in tfrecords.read_examples(build, "test").items()
                if k in full.input}
    loaded = assert_reloads_equal(full, features, tmp_path / "m.keras")
    assert interactions.find_layer(loaded, "autogroup", AutoGroup).feature_sets() == {
        2: [[0, 1]], 3: [[2, 3, 6]]}
    with pytest.raises(ValueError, match="no set with enough fields"):
        interactions.group_retrain_config(config, [sets[1], {"order": 3, "set": 1,
                                                             "fields": ["cat_0", "cat_1"]}])
    with pytest.raises(ValueError, match="turn one off"):
        config.replace(autofis="search")


def _saved(config, tmp_path):
    path = str(tmp_path / "config.json")
    config.to_json(path)
    return path


@pytest.mark.slow
def test_autogroup_puts_each_planted_pair_in_a_set_of_its_own(planted, tmp_path):
    spec, build = planted
    config = trainer.default_config(spec, "dlrm", autogroup="search", epochs=6)
    trainer.train(config, dataset_dir=build, model_dir=str(tmp_path / "search"),
                  log=lambda _: None, verbose=0)
    model = keras.saving.load_model(tmp_path / "search" / "model.keras")
    groups = interactions.write_group_search(str(tmp_path / "search"), model, config)
    sets = [set(g["fields"]) for g in groups]
    noise = {f"cat_{i}" for i in range(4, 8)}
    for pair in ({"cat_0", "cat_1"}, {"cat_2", "cat_3"}):
        assert any(pair <= s and not s & noise for s in sets), sets
    assert (tmp_path / "search" / "feature_sets.png").stat().st_size > 0
    retrain = Config.from_json(str(tmp_path / "search" / "retrain_config.json"))
    assert sorted(map(sorted, (s for sets_ in retrain.autogroup_groups.values()
                               for s in sets_))) == sorted(
        sorted(g["fields"]) for g in groups if len(g["fields"]) >= g["order"])
