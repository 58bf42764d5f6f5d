"""SavedModel export: loaded and called in a fresh process that imports only TensorFlow."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from clean_client import serve_in_clean_process
from deepmix_tf.data import tfrecords
from deepmix_tf.data.spec import BUILTIN_DIR, load_spec
from deepmix_tf.export import export_run
from deepmix_tf.tasks import RatingHead
from deepmix_tf.training import trainer

# Every test here trains a model, and most start a clean client process.
pytestmark = pytest.mark.slow

TINY = dict(embedding_dim=4, low_rank=4, num_experts=2, head_units=[8], batch_size=64,
            epochs=1)

def _dataset(task):
    return f"movielens1m-{task}"


def _train(small_data, tmp_path, task, dataset=None):
    dataset = dataset or _dataset(task)
    model_dir = tmp_path / f"run-{task}"
    trainer.train(trainer.default_config(dataset, "deepmix", **TINY),
                  data_dir=small_data["root"], tfrecord_dir=str(tmp_path / "tf"),
                  model_dir=str(model_dir), log=lambda _: None, verbose=0)
    return model_dir


def _enabled_features(dataset):
    return {f.name for f in load_spec(dataset).features if f.enabled}


def _client(tmp_path, export, features):
    # Every MovieLens signature has movie_id: the wrong-dtype request sends it as float32.
    return serve_in_clean_process(tmp_path, export, features, "movie_id")


def _features(small_data, tmp_path, task, split="test", name=None):
    build = str(tmp_path / "tf" / (name or _dataset(task)))
    features, _ = next(iter(tfrecords.make_dataset(build, split, 50)))
    # Strings as fixed-width bytes: savez without pickling, tf.constant makes tf.string.
    return {k: v.numpy().astype("S") if v.dtype == tf.string else v.numpy()
            for k, v in features.items()}


def _predict(model, features):
    return np.asarray(model({k: tf.constant(v) for k, v in features.items()}))


def test_exported_rating_model_serves_raw_features_in_a_clean_process(small_data, tmp_path):
    model_dir = _train(small_data, tmp_path, "rating")
    export = export_run(str(model_dir), str(tmp_path / "serving"), "deepmix_rating")
    assert export == str(tmp_path / "serving" / "deepmix_rating" / "1")
    model = keras.saving.load_model(model_dir / "model.keras")
    features = _features(small_data, tmp_path, "rating")
    # Unknown user and movie ids (and an unknown zip code) still get a prediction.
    features["user_id"][:3] = [10 ** 9, -1, 0]
    features["movie_id"][:3] = [10 ** 9, -1, 0]
    features["zip_code"][0] = b"zzz"
    wanted = {k: features[k] for k in model.input}
    expected = _predict(model, wanted)
    outputs, report = _client(tmp_path, export, wanted)
    assert sorted(outputs) == ["rating"]
    np.testing.assert_allclose(outputs["rating"], expected, atol=1e-5)
    assert np.isfinite(outputs["rating"]).all()
    assert ((outputs["rating"] >= 1) & (outputs["rating"] <= 5)).all()
    assert report["leaked"] == []
    error = report["errors"]["wrong_dtype"]
    assert "name='movie_id'" in error and "tf.int64" in error, error
    assert "missing a required argument: 'age'" in report["errors"]["missing"]


def test_an_xla_compiled_export_serves_the_same_predictions(small_data, tmp_path):
    from tensorflow.core.protobuf import saved_model_pb2

    model_dir = _train(small_data, tmp_path, "rating")
    export = export_run(str(model_dir), str(tmp_path / "serving"), jit_compile=True)
    model = keras.saving.load_model(model_dir / "model.keras")
    features = _features(small_data, tmp_path, "rating")
    features["movie_id"][0] = 10 ** 9
    wanted = {k: features[k] for k in model.input}
    outputs, report = _client(tmp_path, export, wanted)
    np.testing.assert_allclose(outputs["rating"], _predict(model, wanted), atol=1e-5)
    assert report["leaked"] == []
    # The network is one function marked for XLA; the lookups stay outside it.
    saved = saved_model_pb2.SavedModel.FromString(
        open(os.path.join(export, "saved_model.pb"), "rb").read())
    library = saved.meta_graphs[0].graph_def.library.function
    compiled = [f for f in library if f.attr.get("_XlaMustCompile") and
                f.attr["_XlaMustCompile"].b]
    assert len(compiled) == 1
    ops = {node.op for node in compiled[0].node_def}
    assert "MatMul" in ops and not any("HashTable" in op or "Lookup" in op for op in ops)
    signature = json.loads(open(os.path.join(export, "assets.extra",
                                             "deepmix_signature.json")).read())
    assert signature["jit_compile"] is True


def _all_layers(model):
    """Every layer of `model`, nested models' layers included."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def test_a_bfloat16_export_keeps_the_network_in_bfloat16_and_the_signature_unchanged(
        small_data, tmp_path):
    model_dir = _train(small_data, tmp_path, "rating")
    export = export_run(str(model_dir), str(tmp_path / "serving"), precision="bfloat16")
    model = keras.saving.load_model(model_dir / "model.keras")
    wanted = {k: v for k, v in _features(small_data, tmp_path, "rating").items()
              if k in model.input}
    outputs, report = _client(tmp_path, export, wanted)
    assert report["leaked"] == [] and outputs["rating"].dtype == np.float32
    difference = np.abs(outputs["rating"] - _predict(model, wanted))
    # Rounded arithmetic, so not float32's answer, yet close to it.
    assert 1e-5 < difference.max() < 0.05, difference.max()
    # Every float weight is stored in bfloat16 but the output layer's, which stays float32
    # (its kernel and its bias).
    head = next(layer for layer in _all_layers(model) if isinstance(layer, RatingHead))
    output_kernel = tuple(head.dense.kernel.shape)
    stored = tf.train.load_checkpoint(os.path.join(export, "variables", "variables"))
    shapes = stored.get_variable_to_shape_map()
    by_dtype = {}
    for name, dtype in stored.get_variable_to_dtype_map().items():
        by_dtype.setdefault(dtype, set()).add(tuple(shapes[name]))
    assert len(by_dtype[tf.bfloat16]) > 5
    assert by_dtype[tf.float32] == {output_kernel, (1,)}, by_dtype
    signature = json.loads(open(os.path.join(export, "assets.extra",
                                             "deepmix_signature.json")).read())
    assert signature["precision"] == "bfloat16"
    with pytest.raises(ValueError, match="precision"):
        export_run(str(model_dir), str(tmp_path / "serving"), precision="float16")


def test_exported_genre_model_names_its_outputs(small_data, tmp_path):
    model_dir = _train(small_data, tmp_path, "genre")
    export = export_run(str(model_dir), str(tmp_path / "serving"))
    model = keras.saving.load_model(model_dir / "model.keras")
    features = _features(small_data, tmp_path, "genre")
    wanted = {k: features[k] for k in model.input}
    logits = _predict(model, wanted)
    outputs, report = _client(tmp_path, export, wanted)
    assert report["leaked"] == []
    assert sorted(outputs) == ["genre_names", "predicted", "probabilities", "threshold"]
    threshold = json.loads((model_dir / "metrics.json").read_text())["decision"]["thresholds"]
    np.testing.assert_allclose(outputs["probabilities"], 1 / (1 + np.exp(-logits)), atol=1e-5)
    np.testing.assert_array_equal(outputs["predicted"], outputs["probabilities"] >= threshold)
    # The names of the columns are the build's classes (its spec's label values), in order.
    classes = tfrecords.read_metadata(tmp_path / "tf" / _dataset("genre"))["task"]["classes"]
    assert outputs["genre_names"].shape == outputs["probabilities"].shape
    assert outputs["genre_names"][0].tolist() == classes == load_spec(
        _dataset("genre")).task["classes"]
    assert classes[:3] == ["Action", "Adventure", "Animation"]
    assert "genres" not in wanted  # the label is never an input
    # One threshold per genre (chosen on validation), repeated for every example.
    assert outputs["threshold"].shape == outputs["probabilities"].shape
    np.testing.assert_allclose(outputs["threshold"],
                               np.broadcast_to(threshold, outputs["threshold"].shape), rtol=1e-6)
    signature = json.loads(open(os.path.join(export, "assets.extra",
                                             "deepmix_signature.json")).read())
    assert signature["dataset"] == _dataset("genre")
    assert signature["task"]["classes"] == classes and "stats" not in signature["task"]
    assert signature["decision"]["thresholds"] == threshold
    assert [row[0] for row in signature["outputs"]] == ["probabilities", "predicted",
                                                        "genre_names", "threshold"]


def test_genre_names_follow_the_class_order_of_the_build(small_data, tmp_path):
    """A spec whose task lists the genres in another order: the labels, the outputs and
    their names all follow the build's metadata, not a list in the code."""
    with open(os.path.join(BUILTIN_DIR, "movielens1m-genre.json")) as f:
        raw = json.load(f)
    label = next(c for c in raw["tables"]["movies"]["columns"] if c["name"] == "genres")
    classes = label["values"][::-1]
    raw["name"], raw["task"]["classes"] = "genre-reversed", classes
    spec = tmp_path / "genre-reversed.json"
    spec.write_text(json.dumps(raw))
    model_dir = _train(small_data, tmp_path, "genre", dataset=str(spec))
    build = tmp_path / "tf" / "genre-reversed"
    assert tfrecords.read_metadata(build)["task"]["classes"] == classes
    shipped = tfrecords.build_tfrecords(_dataset("genre"), small_data["root"],
                                        str(tmp_path / "tf"), log=lambda _: None)
    np.testing.assert_array_equal(tfrecords.read_examples(build, "train")["genres"],
                                  tfrecords.read_examples(shipped, "train")["genres"][:, ::-1])
    export = export_run(str(model_dir), str(tmp_path / "serving"))
    assert export == str(tmp_path / "serving" / "deepmix_genre" / "1")
    features = _features(small_data, tmp_path, "genre", name="genre-reversed")
    model = keras.saving.load_model(model_dir / "model.keras")
    wanted = {k: features[k] for k in model.input}
    outputs = tf.saved_model.load(export).signatures["serving_default"](
        **{k: tf.constant(v) for k, v in wanted.items()})
    names = outputs["genre_names"].numpy().astype(str)
    assert names.shape == (len(features["year"]), len(classes))
    assert (names == classes).all()
    np.testing.assert_allclose(outputs["probabilities"].numpy(),
                               1 / (1 + np.exp(-_predict(model, wanted))), atol=1e-5)


def test_saved_model_cli_lists_the_documented_signature(small_data, tmp_path):
    model_dir = _train(small_data, tmp_path, "rating")
    export = export_run(str(model_dir), str(tmp_path / "serving"), version=7)
    assert export.endswith(os.path.join("deepmix_rating", "7"))
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--all", "--dir", export], capture_output=True,
                           text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    text = shown.stdout
    assert "signature_def['serving_default']" in text
    signature = json.loads(open(os.path.join(export, "assets.extra",
                                             "deepmix_signature.json")).read())
    documented = {name: dtype for name, dtype, _, _ in signature["inputs"]}
    # Exactly the spec's enabled features (the dense table's key, movie_id, is one of
    # them): not the disabled timestamp, though every build writes it.
    dataset = _dataset("rating")
    assert set(documented) == _enabled_features(dataset)
    assert len(documented) == len(signature["inputs"])
    meta = tfrecords.read_metadata(tmp_path / "tf" / dataset)
    assert "timestamp" in {c["name"] for c in meta["columns"]} - set(documented)
    assert {t["key"] for t in meta["dense_tables"].values()} <= set(documented)
    assert signature["dataset"] == dataset and signature["task"]["type"] == "regression"
    assert [row[0] for row in signature["outputs"]] == ["rating"]
    meaning = {name: doc for name, _, _, doc in signature["inputs"]}
    assert meaning["zip_code"] == load_spec(dataset).feature("zip_code").doc
    block = text[text.index("signature_def['serving_default']"):]
    for name, dtype in documented.items():
        assert f"inputs['{name}'] tensor_info:\n        dtype: DT_{dtype.upper()}" in block, name
    assert "outputs['rating'] tensor_info:\n        dtype: DT_FLOAT" in block


def test_warmup_requests_are_real_prediction_logs(small_data, tmp_path):
    from tensorflow_serving.apis import prediction_log_pb2

    model_dir = _train(small_data, tmp_path, "rating")
    export = export_run(str(model_dir), str(tmp_path / "serving"))
    path = os.path.join(export, "assets.extra", "tf_serving_warmup_requests")
    records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    assert len(records) == 2
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        assert set(request.inputs) == _enabled_features(_dataset("rating"))


def test_an_existing_version_is_never_overwritten(small_data, tmp_path):
    model_dir = _train(small_data, tmp_path, "rating")
    export_run(str(model_dir), str(tmp_path / "serving"), version=3)
    with pytest.raises(FileExistsError):
        export_run(str(model_dir), str(tmp_path / "serving"), version=3)
    assert export_run(str(model_dir), str(tmp_path / "serving")).endswith("4")
    assert sorted(os.listdir(tmp_path / "serving" / "deepmix_rating")) == ["3", "4"]
