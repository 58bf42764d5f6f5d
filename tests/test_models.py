"""DeepMix and its baselines end to end on small data: build, train, evaluate, save, load."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO
from deepmix_tf.data import tfrecords
from deepmix_tf.models import MODELS, Config, build_model, load_tables
from deepmix_tf.training import trainer

TINY = dict(embedding_dim=4, low_rank=4, num_experts=2, head_units=[8], bottom_units=[8, 4],
            batch_size=64, epochs=2, patience=5)


def _tiny(task, model, **overrides):
    return trainer.default_config(task, model, **{**TINY, **overrides})


def _silent(_):
    pass


@pytest.fixture
def small_build(small_data, tmp_path):
    return tfrecords.build_tfrecords(small_data["root"], str(tmp_path / "tfrecords"),
                                     log=_silent)


@pytest.mark.parametrize("task", ["rating", "genre"])
@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains_and_writes_metrics(small_data, tmp_path, task, model):
    model_dir = tmp_path / "run"
    out = trainer.train(_tiny(task, model), data_dir=small_data["root"],
                        tfrecord_dir=str(tmp_path / "tfrecords"), model_dir=str(model_dir),
                        log=_silent, verbose=0)
    written = json.loads((model_dir / "metrics.json").read_text())
    assert written == json.loads(json.dumps(out))
    assert (written["task"], written["model"], written["protocol"]) == (task, model,
                                                                       "rel-movielens1m")
    assert written["seed"] == 42 and written["epochs_run"] == 2
    assert written["examples_per_s"] > 0 and written["wall_time_s"] > 0
    names = ("mae", "rmse") if task == "rating" else ("micro_f1", "macro_f1")
    for split in ("val", "test"):
        assert sorted(written[split]) == sorted(names)
        assert all(np.isfinite(v) and v >= 0 for v in written[split].values())
    if task == "genre":
        assert len(written["threshold"]) == len(written["genres"]) == 18
        assert all(0 < t < 1 for t in written["threshold"])
        assert 0 <= written["decision"]["logit_adjustment"] <= 1
        assert all(v <= 1 for split in ("val", "test") for v in written[split].values())
    assert Config.from_json(model_dir / "config.json") == _tiny(task, model)
    assert (model_dir / "model.keras").is_file()
    assert os.listdir(model_dir / "logs")  # TensorBoard
    assert not (model_dir / "backup").exists()  # removed once training completes


def test_saved_model_file_predicts_like_the_trained_model(small_data, tmp_path):
    model_dir = tmp_path / "run"
    trainer.train(_tiny("rating", "deepmix"), data_dir=small_data["root"],
                  tfrecord_dir=str(tmp_path / "tfrecords"), model_dir=str(model_dir),
                  log=_silent, verbose=0)
    loaded = keras.saving.load_model(model_dir / "model.keras")
    build = str(tmp_path / "tfrecords" / "rel-movielens1m")
    features, labels = next(iter(tfrecords.make_dataset(build, "rating", "test", 1000)))
    raw = {name: features[name] for name in loaded.input}
    predictions = np.asarray(loaded.predict(raw, verbose=0))
    assert predictions.shape == labels.shape
    assert (predictions >= 1).all() and (predictions <= 5).all()
    # Metrics recomputed from the saved file agree with metrics.json.
    test_mae = float(np.mean(np.abs(predictions - labels.numpy())))
    written = json.loads((model_dir / "metrics.json").read_text())
    assert test_mae == pytest.approx(written["test"]["mae"], abs=1e-5)


@pytest.mark.parametrize("model", ["deepmix", "dlrm"])
def test_keras_round_trip_of_the_raw_feature_model(small_build, tmp_path, model):
    config = _tiny("rating", model)
    meta = tfrecords.read_metadata(small_build)["tasks"]["rating"]
    _, _, full = build_model(config, meta, load_tables(small_build, config))
    features, _ = next(iter(tfrecords.make_dataset(small_build, "rating", "validation", 16)))
    raw = {name: features[name] for name in full.input}
    path = str(tmp_path / "m.keras")
    full.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(full.predict(raw, verbose=0), loaded.predict(raw, verbose=0))


def test_unknown_ids_and_values_take_the_out_of_vocabulary_path(small_build):
    config = _tiny("rating", "deepmix")
    meta = tfrecords.read_metadata(small_build)["tasks"]["rating"]
    _, _, full = build_model(config, meta, load_tables(small_build, config))
    raw = {"user_id": np.array([10 ** 9]), "movie_id": np.array([-5]),
           "gender": np.array(["X"]), "age": np.array([3]), "occupation": np.array([99]),
           "zip_code": np.array([""]), "year": np.array([0]), "certificate": np.array(["??"]),
           "genres": np.array(["Nonsense|"])}
    prediction = np.asarray(full({k: tf.constant(raw[k]) for k in full.input}))
    assert prediction.shape == (1,) and 1 <= prediction[0] <= 5


def test_genre_multi_hot_marks_each_known_name_once():
    from deepmix_tf.models.preprocessing import GenreMultiHot

    layer = GenreMultiHot(["Comedy", "Drama", "War"])
    got = layer(tf.constant(["Drama", "War|Comedy", "", "Drama|Drama|Western", "Nonsense|"]))
    np.testing.assert_array_equal(np.asarray(got), [[0, 1, 0], [1, 0, 1], [0, 0, 0],
                                                    [0, 1, 0], [0, 0, 0]])
    assert tuple(layer(tf.constant([], tf.string)).shape) == (0, 3)


def test_genre_decision_is_logit_adjustment_chosen_on_validation():
    from deepmix_tf.training import metrics

    rng = np.random.default_rng(0)
    prior = np.array([0.5, 0.05])
    y = (rng.random((400, 2)) < prior).astype(float)
    # The rare label's logits sit low: a shared threshold rarely predicts it.
    logits = np.where(y == 1, 0.5, -1.5) + rng.normal(0, 1, (400, 2))
    logits[:, 1] -= 2.0
    chosen = metrics.choose_genre_decision(y, logits, prior)
    assert chosen["logit_adjustment"] > 0
    t, tau = chosen["threshold"], chosen["logit_adjustment"]
    expected = 1 / (1 + np.exp(-(np.log(t / (1 - t)) + tau * np.log(prior))))
    np.testing.assert_allclose(chosen["thresholds"], expected)
    assert chosen["thresholds"][1] < chosen["thresholds"][0]
    scores = metrics.f1_scores(y, 1 / (1 + np.exp(-logits)), chosen["thresholds"])
    assert scores["micro_f1"] == pytest.approx(chosen["val_micro_f1"], abs=1e-6)
    assert scores["macro_f1"] == pytest.approx(chosen["val_macro_f1"], abs=1e-6)
    # The grid holds tau = 0, so the choice is never worse than no adjustment.
    plain = metrics.choose_genre_decision(y, logits, prior, adjustments=[0.0])
    assert plain["logit_adjustment"] == 0.0
    assert (plain["val_micro_f1"] + plain["val_macro_f1"]
            < chosen["val_micro_f1"] + chosen["val_macro_f1"])


def test_genre_models_never_see_the_genre_column(small_build):
    for model in MODELS:
        config = _tiny("genre", model)
        meta = tfrecords.read_metadata(small_build)["tasks"]["genre"]
        preprocessor, _, full = build_model(config, meta, load_tables(small_build, config))
        assert "genres" not in full.input
        assert full.output.shape == (None, 18)


def test_deepmix_network_overfits_a_small_training_split(small_build):
    """The whole DeepMix network can memorise ~500 ratings: training MAE falls far below the
    spread of the labels."""
    keras.utils.set_random_seed(0)
    config = _tiny("rating", "deepmix", dropout=0.0, l2=0.0, embedding_dim=8, head_units=[32])
    meta = tfrecords.read_metadata(small_build)["tasks"]["rating"]
    preprocessor, network, _ = build_model(config, meta, load_tables(small_build, config))
    ds = tfrecords.make_dataset(
        small_build, "rating", "train", 1024, in_memory=True,
        transform=lambda f: preprocessor({k: f[k] for k in preprocessor.input}))
    features, labels = next(iter(ds))
    network.compile(keras.optimizers.Adam(0.003), "mse", metrics=["mae"])
    history = network.fit(features, labels, epochs=600, batch_size=1024, verbose=0)
    baseline = float(np.mean(np.abs(labels - np.mean(labels))))
    assert history.history["mae"][-1] < 0.1 * baseline


def _fed_by(model, name):
    """Names of the layers whose outputs layer `name` reads, from the model's config (what
    `model.keras` stores)."""
    layer = next(entry for entry in model.get_config()["layers"] if entry["name"] == name)
    names = set()

    def visit(value):
        if isinstance(value, dict):
            if "keras_history" in value:
                names.add(value["keras_history"][0])
            for item in value.values():
                visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)

    visit(layer["inbound_nodes"])
    return names


def test_deepmix_combines_wire_the_parts_as_documented(small_build):
    meta = tfrecords.read_metadata(small_build)["tasks"]["rating"]
    networks, wiring = {}, {}
    for combine in ("stacked", "parallel", "towers"):
        config = _tiny("rating", "deepmix", combine=combine, dropout=0.0)
        _, networks[combine], _ = build_model(config, meta, load_tables(small_build, config))
        wiring[combine] = {name: _fed_by(networks[combine], name)
                           for name in ("cross_net_mix", "scoring_0", "rating")}
    # The paper's order: residual block -> CrossNetMix -> scoring MLP -> rating.
    assert wiring["stacked"] == {"cross_net_mix": {"residual_block_0"},
                                 "scoring_0": {"cross_net_mix"}, "rating": {"scoring_0"}}
    # Both read the stacked features; the scoring MLP reads both outputs.
    assert wiring["parallel"] == {"cross_net_mix": {"stacking"}, "scoring_0": {"combine"},
                                  "rating": {"scoring_0"}}
    # DCN-V2's parallel form: CrossNetMix beside a deep tower (residual block -> MLP), and
    # the output layer reads both.
    assert wiring["towers"] == {"cross_net_mix": {"stacking"},
                                "scoring_0": {"residual_block_0"}, "rating": {"combine"}}
    assert _fed_by(networks["towers"], "combine") == {"cross_net_mix", "scoring_0"}
    with pytest.raises(ValueError, match="combine must be one of"):
        Config(combine="side_by_side")


def test_config_round_trips_and_rejects_unknown_fields(tmp_path):
    config = _tiny("genre", "dcn_v2", head_units=[32, 16])
    config.to_json(tmp_path / "c.json")
    assert Config.from_json(tmp_path / "c.json") == config
    (tmp_path / "bad.json").write_text(json.dumps({"task": "rating", "residual_blockz": 2}))
    with pytest.raises(ValueError, match=r"bad\.json.*residual_blockz"):
        Config.from_json(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="unknown model"):
        Config(model="xgboost")


def test_train_command_line(small_data, tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({**TINY, "epochs": 5}))
    command = [sys.executable, "-m", "experiments.train", "--task=genre", "--model=biases",
               f"--data_dir={small_data['root']}", f"--tfrecord_dir={tmp_path / 'tf'}",
               f"--model_dir={tmp_path / 'run'}", f"--config={config}", "--epochs=1",
               "--seed=7", "--verbose=0"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # Flags override --config, which overrides the task's defaults.
    assert written["epochs_run"] == 1 and written["seed"] == 7
    assert written["config"]["batch_size"] == 64
    assert '"micro_f1"' in result.stdout


def test_train_uses_a_given_build_as_it_is(small_data, tmp_path):
    build = tfrecords.build_tfrecords(small_data["root"], str(tmp_path / "custom"),
                                      svd_dim={"rating": 2, "genre": 3}, log=_silent)
    fingerprint = tfrecords.read_metadata(build)["fingerprint"]
    written = trainer.train(_tiny("genre", "deepmix", epochs=1), data_dir=small_data["root"],
                            tfrecord_dir=str(tmp_path / "unused"), dataset_dir=build,
                            model_dir=str(tmp_path / "run"), log=_silent, verbose=0)
    # Neither rebuilt with the default options nor copied elsewhere.
    assert written["dataset"] == {"dir": build, "fingerprint": fingerprint}
    assert tfrecords.read_metadata(build)["fingerprint"] == fingerprint
    assert not os.path.exists(tmp_path / "unused")
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert model.get_layer("deepmix").get_layer("movie_table").dim == \
        tfrecords.load_dense_table(build, "genre")[1].shape[1]
    with pytest.raises(ValueError, match="'rel-movielens1m' build; the run's protocol is "
                                         "'random'"):
        trainer.train(_tiny("genre", "biases", protocol="random"), dataset_dir=build,
                      model_dir=str(tmp_path / "run2"), log=_silent, verbose=0)


def test_the_same_seed_gives_the_same_weights_twice_in_one_process(small_data, tmp_path):
    # In a fresh process: the first model built there once differed from later ones (an
    # import drew from Python's random generator after seeding).
    script = (
        "import json, sys\n"
        "from deepmix_tf.training import trainer\n"
        "config = trainer.default_config('rating', 'deepmix', **json.loads(sys.argv[1]))\n"
        "for i in range(2):\n"
        "    out = trainer.train(config, data_dir=sys.argv[2], tfrecord_dir=sys.argv[3],\n"
        "                        model_dir=f'{sys.argv[3]}/run{i}', log=lambda _: None,\n"
        "                        verbose=0)\n"
        "    print(out['weights_sha256'], out['val']['mae'])\n")
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps({**TINY, "epochs": 1}), small_data["root"],
         str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = result.stdout.split("\n")[:2]
    assert first == second


def test_graph_prior_moves_movies_by_how_few_ratings_they_have():
    from deepmix_tf.data.graph import graph_prior

    names = ["log_count", "mean_rating", "svd_0", "svd_1"]
    values = np.array([[np.log1p(0), 0, 0, 0], [np.log1p(5), 3, 1, 0],
                       [np.log1p(5000), 4, 0, 1]], np.float32)
    node = np.array([[0, 2.0], [0, 3.0], [3.0, 0]], np.float32)
    out = graph_prior(values, names, node, strength=5)
    np.testing.assert_array_equal(out[:, :2], values[:, :2])  # other columns untouched
    np.testing.assert_allclose(out[0, 2:], [0, 1], atol=1e-6)  # no ratings: the text's
    # As many ratings as the strength: halfway between both directions.
    np.testing.assert_allclose(out[1, 2:], [np.sqrt(0.5), np.sqrt(0.5)], atol=1e-5)
    np.testing.assert_allclose(out[2, 2:], [0, 1], atol=2e-3)  # many ratings: its own
    with pytest.raises(ValueError, match="encode_nodes --objective=graph_prior"):
        graph_prior(values, names, node[:, :1], 5)


def test_node_prior_replaces_the_spectral_columns_instead_of_adding_some(small_build,
                                                                          tmp_path):
    ids, _, names = tfrecords.load_dense_table(small_build, "genre", with_names=True)
    spectral = [name for name in names if name.startswith("svd_")]
    node = np.random.default_rng(0).normal(size=(len(ids), len(spectral))).astype(np.float32)
    path = tmp_path / "node_embeddings.npy"
    np.save(path, node)
    np.save(tmp_path / "node_embeddings.ids.npy", ids)
    prior = _tiny("genre", "deepmix", dense_tables=["movie_graph", "node"],
                  node_embeddings=str(path), node_prior=5.0)
    _, base = load_tables(small_build, _tiny("genre", "deepmix"))
    _, blended = load_tables(small_build, prior)
    _, appended = load_tables(small_build, prior.replace(node_prior=0.0))
    assert blended.shape == base.shape
    assert appended.shape == (base.shape[0], base.shape[1] + len(spectral))
    changed = ~np.isclose(blended, base, atol=1e-5).all(axis=0)
    assert changed.any() and all(names[i].startswith("svd_")
                                 for i in np.flatnonzero(changed))
    np.save(path, node[:, :3])
    with pytest.raises(ValueError, match="node_embeddings.npy"):
        load_tables(small_build, prior)
    with pytest.raises(ValueError, match="node_prior"):
        prior.replace(node_prior=-1.0)
