"""AutoFIS: the GRDA optimizer, the gated interaction layer, the search and the retrain."""

import json

import keras
import numpy as np
import pytest

from deepmix_tf.data import generate as gen
from deepmix_tf.data import tfrecords
from deepmix_tf.layers import GatedInteraction
from deepmix_tf.models import Config, build_model
from deepmix_tf.optimizers import GRDA, GatedAdam
from deepmix_tf.training import interactions, trainer


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
    full.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded(features)), np.asarray(full(features)),
                               atol=1e-6)
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


@pytest.mark.slow
def test_autofis_keeps_the_planted_pairs_and_drops_most_others(tmp_path):
    spec, build = _meta(tmp_path, rows=200_000)
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
