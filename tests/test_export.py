"""SavedModel export: loaded and called in a fresh process that imports only TensorFlow."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from deepmix_tf.data import tfrecords
from deepmix_tf.export import export_run
from deepmix_tf.models.stacking import RatingHead
from deepmix_tf.training import trainer

TINY = dict(embedding_dim=4, low_rank=4, num_experts=2, head_units=[8], batch_size=64,
            epochs=1)

# Runs in a new interpreter: TensorFlow only, none of our code, no Keras Hub.
_CLIENT = r"""
import json, sys
import numpy as np
import tensorflow as tf
export, features_file, out_file = sys.argv[1:]
loaded = tf.saved_model.load(export)
serve = loaded.signatures["serving_default"]
with np.load(features_file, allow_pickle=False) as data:
    features = {k: tf.constant(data[k]) for k in data.files}
errors = {}
# A wrong dtype: rejected before any of the model runs.
wrong = dict(features); name = "movie_id"
wrong[name] = tf.constant(features[name].numpy().astype("float32"))
def chain(e):
    # What the user sees: the error and the ones it was raised while handling.
    return "\n".join(str(x) for x in (e, e.__context__, e.__cause__) if x is not None)
try:
    serve(**wrong)
except Exception as e:
    errors["wrong_dtype"] = chain(e)
outputs = {k: v.numpy() for k, v in serve(**features).items()}
missing = dict(features); missing.pop(sorted(features)[0])
try:
    serve(**missing)
except Exception as e:
    errors["missing"] = chain(e)
np.savez(out_file, **{k: (v.astype(str) if v.dtype == object else v) for k, v in outputs.items()})
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("deepmix_tf", "keras_hub",
                                                              "keras_nlp", "keras_rs"))
print(json.dumps({"errors": errors, "leaked": leaked}))
"""


def _train(small_data, tmp_path, task):
    model_dir = tmp_path / f"run-{task}"
    trainer.train(trainer.default_config(task, "deepmix", **TINY), data_dir=small_data["root"],
                  tfrecord_dir=str(tmp_path / "tf"), model_dir=str(model_dir),
                  log=lambda _: None, verbose=0)
    return model_dir


def _client(tmp_path, export, features):
    np.savez(tmp_path / "features.npz", **features)
    script = tmp_path / "client.py"
    script.write_text(_CLIENT)
    result = subprocess.run([sys.executable, str(script), export, str(tmp_path / "features.npz"),
                             str(tmp_path / "out.npz")], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    with np.load(tmp_path / "out.npz") as data:
        return {k: data[k] for k in data.files}, report


def _features(small_data, tmp_path, task, split="test"):
    build = str(tmp_path / "tf" / "rel-movielens1m")
    features, _ = next(iter(tfrecords.make_dataset(build, task, split, 50)))
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
    outputs, _ = _client(tmp_path, export, wanted)
    threshold = json.loads((model_dir / "metrics.json").read_text())["threshold"]
    np.testing.assert_allclose(outputs["probabilities"], 1 / (1 + np.exp(-logits)), atol=1e-5)
    np.testing.assert_array_equal(outputs["predicted"], outputs["probabilities"] >= threshold)
    assert outputs["genre_names"][0].tolist()[:3] == ["Action", "Adventure", "Animation"]
    # One threshold per genre (chosen on validation), repeated for every example.
    assert outputs["threshold"].shape == outputs["probabilities"].shape
    np.testing.assert_allclose(outputs["threshold"],
                               np.broadcast_to(threshold, outputs["threshold"].shape), rtol=1e-6)


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
    assert set(documented) == {"user_id", "gender", "age", "occupation", "zip_code",
                               "movie_id", "year", "certificate", "genres"}
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
        assert set(request.inputs) == {"user_id", "gender", "age", "occupation", "zip_code",
                                       "movie_id", "year", "certificate", "genres"}


def test_an_existing_version_is_never_overwritten(small_data, tmp_path):
    model_dir = _train(small_data, tmp_path, "rating")
    export_run(str(model_dir), str(tmp_path / "serving"), version=3)
    with pytest.raises(FileExistsError):
        export_run(str(model_dir), str(tmp_path / "serving"), version=3)
    assert export_run(str(model_dir), str(tmp_path / "serving")).endswith("4")
    assert sorted(os.listdir(tmp_path / "serving" / "deepmix_rating")) == ["3", "4"]
