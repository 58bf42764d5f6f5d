"""SavedModel export for TensorFlow Serving: raw features in, named predictions out.

Layout: `<export_dir>/<model_name>/<version>/` (TF Serving's), written under a temporary
name and renamed when complete. Every lookup (vocabularies, multi-hot splitting, key ->
dense-table row) is inside the graph, so a client sends exactly the raw values of
the build's features and nothing computed in Python; the outputs are the task's.
"""

import json
import os

import numpy as np
import tensorflow as tf

from deepmix_tf.files import staged_directory
from deepmix_tf.tasks import make_task

SIGNATURE = "serving_default"
WARMUP_FILE = "tf_serving_warmup_requests"
PRECISIONS = ("float32", "bfloat16")


def input_specs(model):
    """Named TensorSpecs of the model's raw inputs, in the model's input order: (batch,), or
    (batch, length) for bags of ids."""
    return [tf.TensorSpec([None] + list(t.shape[1:]), t.dtype, name=name)
            for name, t in model.input.items()]


def signature_table(model, meta, task):
    """The serving signature as rows (name, dtype, shape, meaning), for docs and tests."""
    docs = {f["name"]: f["doc"] for f in meta["features"]}
    keys = {t["key"]: f"key of the {name} table" for name, t in meta["dense_tables"].items()}
    rows = [(s.name, s.dtype.name, "(batch,)" if s.shape.rank == 1 else
             f"(batch, {s.shape[1]})", docs.get(s.name) or keys.get(s.name, ""))
            for s in input_specs(model)]
    return rows, task.signature_outputs()


def export(model, meta, export_dir, model_name, version=None, decision=None,
           warmup_features=None, jit_compile=False, precision="float32", catalogue=None):
    """Exports a raw-feature Keras model (`model.keras` of a run) for TF Serving.

    Args:
        model: the Keras model taking the raw feature dict.
        meta: the metadata of the build it was trained on (its task and features).
        export_dir: base folder; the model goes to `<export_dir>/<model_name>/<version>/`.
        model_name: str.
        version: int or None (None: one more than the highest existing version, else 1).
        decision: the task's decision rule chosen on validation (`metrics.json`'s
            `decision`: per-label thresholds, ...), or None for the task's default.
        warmup_features: dict name -> numpy array of a few real examples, written as
            `assets.extra/tf_serving_warmup_requests`; None writes none.
        jit_compile: bool. Compile the network (not the lookups) with XLA. TF Serving then
            needs `--xla_cpu_compilation_enabled=true`, and compiles once per new batch size.
        precision: "float32" or "bfloat16". With "bfloat16" the network behind the
            preprocessor is a copy of the trained one that keeps its weights in bfloat16 and
            computes in it, but for its float32 output layer; inputs and outputs keep their
            dtypes. Faster only on CPUs with
            bfloat16 arithmetic (AVX512_BF16, AMX); predictions move a little (measure the
            effect with `experiments.benchmark_serving --evaluate`).
        catalogue: the build's item table (`tfrecords.load_catalogue`) or None. Given, the
            export also has the `recommend` and `recommend_excluding` signatures
            (`export.recommend`), over the float32 network without XLA (`export_run` adds
            them to plain exports only).

    Returns:
        The version folder written.
    """
    import keras

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")

    base = os.path.join(export_dir, model_name)
    os.makedirs(base, exist_ok=True)
    if version is None:
        versions = [int(v) for v in os.listdir(base) if v.isdigit()]
        version = max(versions, default=0) + 1
    final = os.path.join(base, str(int(version)))
    specs = input_specs(model)
    names = [s.name for s in specs]
    task = make_task(meta["task"])
    decision = decision or {}

    predict, tracked = _predictor(model, jit_compile, precision)

    def serve(*tensors):
        return task.serving_outputs(predict(dict(zip(names, tensors))), decision)

    archive = keras.export.ExportArchive()
    for part in tracked:
        archive.track(part)
    archive.add_endpoint(SIGNATURE, serve, input_signature=specs)
    recommender = None
    if catalogue is not None:
        from deepmix_tf.export.recommend import Recommender

        recommender = Recommender(model, meta, catalogue)
        archive.track(recommender)
        for name, (fn, signature) in recommender.endpoints().items():
            archive.add_endpoint(name, fn, input_signature=signature)
    with staged_directory(final, replace=False) as staging:
        archive.write_out(staging, verbose=False)
        extra = os.path.join(staging, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        if warmup_features is not None:
            write_warmup(os.path.join(extra, WARMUP_FILE), model_name,
                         {n: warmup_features[n] for n in names})
        inputs, outputs = signature_table(model, meta, task)
        about = {"dataset": meta["dataset"], "task": task.describe(),
                 "signature": SIGNATURE, "inputs": inputs, "outputs": outputs,
                 "decision": decision, "jit_compile": bool(jit_compile),
                 "precision": precision}
        if recommender is not None:
            rec_inputs, rec_outputs = recommender.signature_rows(meta)
            from deepmix_tf.export.recommend import network_matmuls

            about["recommend"] = {"signatures": list(recommender.endpoints()),
                                  "items": recommender.size, "inputs": rec_inputs,
                                  "outputs": rec_outputs,
                                  "network_matmuls": network_matmuls(recommender.network)}
        with open(os.path.join(extra, "deepmix_signature.json"), "w") as f:
            json.dump(about, f, indent=1)
    return final


def serving_function(model, meta, decision=None):
    """The computation of `export`'s serving signature (float32, without XLA) as a
    `tf.function` of keyword raw features, without writing a SavedModel: for timing many
    candidate models quickly (`nas.search`). What TF Serving loads is `export`'s."""
    specs = input_specs(model)
    names = [s.name for s in specs]
    task = make_task(meta["task"])
    predict, _ = _predictor(model, False, "float32")

    @tf.function(input_signature=specs)
    def serve(*tensors):
        return task.serving_outputs(predict(dict(zip(names, tensors))), decision or {})

    return lambda **features: serve(*[features[n] for n in names])


def _predictor(model, jit_compile, precision):
    """`model(features)` for serving, and the Keras objects whose state the export keeps.

    With `jit_compile`, the network runs as one XLA computation after the preprocessor
    (lookup tables and string ops cannot be compiled); with a `precision` other than
    float32 it is a copy of the network in that dtype, whose outputs are cast back."""
    if not jit_compile and precision == "float32":
        return (lambda features: model(features, training=False)), [model]
    preprocessor, network = split_model(model, f"jit_compile={jit_compile} and "
                                          f"precision={precision!r}")
    if precision != "float32":
        network = _in_precision(network, precision)
    run = lambda x: network(x, training=False)  # noqa: E731
    if jit_compile:
        run = tf.function(run, jit_compile=True)

    def predict(features):
        outputs = run(preprocessor(features, training=False))
        return tf.nest.map_structure(lambda t: tf.cast(t, tf.float32), outputs)

    return predict, [preprocessor, network]


def split_model(model, why):
    """The (preprocessor, network) sub-models of a model of `build_model`; `why` says what
    needs them, for the error."""
    import keras

    from deepmix_tf.models.preprocessing import PREPROCESSOR

    parts = {layer.name: layer for layer in model.layers if isinstance(layer, keras.Model)}
    preprocessor = parts.pop(PREPROCESSOR, None)
    if preprocessor is None or len(parts) != 1:
        raise ValueError(f"{why} need a model "
                         f"of `build_model` (a {PREPROCESSOR!r} and one network sub-model); "
                         f"{model.name!r} has sub-models "
                         f"{sorted(parts) + ([PREPROCESSOR] if preprocessor else [])}")
    (network,) = parts.values()
    return preprocessor, network


def _in_precision(network, precision):
    """A copy of `network` whose float32 layers keep their weights in, and compute with,
    `precision`, except its output layers: they stay float32, as Keras advises for mixed
    precision, so that predictions keep float32 resolution (bfloat16 spaces numbers
    near a rating of 4 by 1/32)."""

    def convert(config):
        if isinstance(config, dict):
            if (config.get("class_name") == "DTypePolicy"
                    and config.get("config", {}).get("name") == "float32"):
                return {**config, "config": {**config["config"], "name": precision}}
            return {key: convert(value) for key, value in config.items()}
        if isinstance(config, list):
            return [convert(value) for value in config]
        return config

    config = network.get_config()
    outputs = {name for name, _, _ in _flat_outputs(config["output_layers"])}
    config["layers"] = [layer if layer["config"].get("name") in outputs else convert(layer)
                        for layer in config["layers"]]
    copy = network.__class__.from_config(config)
    copy.set_weights(network.get_weights())
    return copy


def _flat_outputs(output_layers):
    """The [name, node, index] entries of a functional config's `output_layers`, which is
    one such entry, a list of them, or a dict of them."""
    if isinstance(output_layers, dict):
        output_layers = list(output_layers.values())
    if output_layers and isinstance(output_layers[0], str):
        return [output_layers]
    return [entry for item in output_layers for entry in _flat_outputs(item)]


def write_warmup(path, model_name, features):
    """`PredictionLog` records of one Predict request per example batch, the format TF
    Serving replays at load (`assets.extra/tf_serving_warmup_requests`)."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    os.makedirs(os.path.dirname(path), exist_ok=True)
    n = len(next(iter(features.values())))
    with tf.io.TFRecordWriter(path) as writer:
        for rows in (slice(0, 1), slice(0, min(n, 8))):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = SIGNATURE
            for name, value in features.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value)[rows]))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def export_run(model_dir, export_dir, model_name=None, version=None, warmup_examples=8,
               jit_compile=False, precision="float32", recommend="auto"):
    """Exports the trained run in `model_dir` (its `model.keras`, `metrics.json`, and the
    metadata of its TFRecord build), with warm-up requests made of the first validation
    examples of that build (`jit_compile`, `precision`: see `export`). `recommend`: "auto"
    adds the `recommend` signatures when the build has an item catalogue, the task a
    ranking score and the export is plain float32 without XLA (the others would carry a
    second copy of the network); True requires them; False leaves them out.

    Returns:
        The version folder written.
    """
    from deepmix_tf.data import tfrecords
    from deepmix_tf.models import load_model

    with open(os.path.join(model_dir, "metrics.json")) as f:
        run = json.load(f)
    dataset_dir = run["build"]["dir"]
    meta = tfrecords.read_metadata(dataset_dir)
    model = load_model(os.path.join(model_dir, "model.keras"))
    warmup = None
    if warmup_examples:
        features, _ = next(iter(tfrecords.make_dataset(dataset_dir, "validation",
                                                       warmup_examples)))
        warmup = {k: v.numpy() for k, v in features.items()}
    catalogue = None
    plain = precision == "float32" and not jit_compile
    if recommend is True and not plain:
        raise ValueError("the recommend signatures are exported in float32 without XLA only; "
                         f"got precision={precision!r}, jit_compile={jit_compile}")
    if recommend is True or (recommend == "auto" and plain and meta.get("items")
                             and meta["task"]["type"] in ("regression", "binary")):
        catalogue = tfrecords.load_catalogue(dataset_dir, meta)
    return export(model, meta, export_dir, model_name or f"deepmix_{run['task']}", version,
                  decision=run.get("decision"), warmup_features=warmup,
                  jit_compile=jit_compile, precision=precision, catalogue=catalogue)
