"""One training run: TFRecords -> tf.data -> model -> fit -> evaluation -> files.

Writes into `model_dir`: `config.json`, `model.keras` (raw features in, prediction out),
`metrics.json`, TensorBoard logs in `logs/`, and `backup/` while training runs (so a killed
run resumes where it stopped).
"""

import contextlib
import dataclasses
import json
import os
import time

import keras
import numpy as np

from deepmix_tf.data import locate, tfrecords
from deepmix_tf.files import write_json
from deepmix_tf.models import build_model, load_tables
from deepmix_tf.models.config import Config
from deepmix_tf.training import metrics as metrics_lib


def default_config(task, model="deepmix", **overrides):
    """The default configuration of a task and model (flags and `--config` override it)."""
    config = Config(task=task, model=model)
    if task == "genre":
        # 388 training movies: small, strongly regularised, many short epochs. Dropout 0.5
        # and L2 1e-3 were chosen on validation (DeepMix micro-F1 0.787 vs 0.748 with 0.3
        # and 1e-4).
        config = config.replace(embedding_dim=8, batch_size=32, epochs=300, patience=30,
                                dropout=0.5, l2=1e-3, head_units=[64], low_rank=16,
                                learning_rate=1e-3)
    return config.replace(**overrides)


def resolve_dataset(config, data_dir, tfrecord_dir, log=print):
    """The TFRecord folder of the run's protocol: built (or found up to date) from the data
    root; an existing build is used as it is when no data root is present."""
    existing = os.path.join(tfrecord_dir, config.protocol)
    try:
        return tfrecords.build_tfrecords(data_dir, tfrecord_dir, protocol=config.protocol,
                                         seed=42, log=log)
    except locate.DataNotFoundError:
        if os.path.isfile(os.path.join(existing, tfrecords.METADATA)):
            log(f"no source data found; using the existing build {existing}")
            return existing
        raise


class _Throughput(keras.callbacks.Callback):
    """Training examples per second of the epochs, without validation time."""

    def __init__(self, examples_per_epoch):
        super().__init__()
        self.examples_per_epoch = examples_per_epoch
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(self._last - self._start)

    def examples_per_second(self):
        # The first epoch includes tracing and compilation: leave it out when we can.
        seconds = self.seconds[1:] or self.seconds
        return self.examples_per_epoch / float(np.median(seconds)) if seconds else 0.0


def _predict(model, dataset):
    predictions, labels = [], []
    for features, label in dataset:
        predictions.append(np.asarray(model(features, training=False)))
        labels.append(label.numpy())
    return np.concatenate(labels), np.concatenate(predictions)


def evaluate(network, task, datasets, threshold=None):
    """Metrics of every split in `datasets` ({"val": ds, "test": ds}); for genres the
    threshold is chosen on "val" unless given."""
    results, outputs = {}, {name: _predict(network, ds) for name, ds in datasets.items()}
    if task == "rating":
        for name, (y, p) in outputs.items():
            results[name] = metrics_lib.rating_metrics(y, p)
        return results, None
    probabilities = {name: 1 / (1 + np.exp(-p)) for name, (y, p) in outputs.items()}
    if threshold is None:
        threshold = metrics_lib.choose_threshold(outputs["val"][0], probabilities["val"])
    for name, (y, _) in outputs.items():
        results[name] = metrics_lib.f1_scores(y, probabilities[name], threshold)
    return results, threshold


def train(config, data_dir=None, tfrecord_dir="artifacts/tfrecords",
          model_dir="artifacts/models/run", log=print, verbose="auto", strategy=None):
    """Trains, evaluates and saves one model.

    Args:
        config: `Config`.
        data_dir: data root (see `locate.resolve_data_dir`).
        tfrecord_dir: where the TFRecord builds live (built when missing or stale).
        model_dir: where the run's files go.
        log: callable taking a str.
        verbose: Keras `fit` verbosity.
        strategy: `tf.distribute.Strategy` or None (default strategy).

    Returns:
        The metrics dict also written to `metrics.json`.
    """
    keras.utils.set_random_seed(config.seed)
    os.makedirs(model_dir, exist_ok=True)
    config.to_json(os.path.join(model_dir, "config.json"))
    dataset_dir = resolve_dataset(config, data_dir, tfrecord_dir, log)
    meta = tfrecords.read_metadata(dataset_dir)
    task_meta = meta["tasks"][config.task]
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        tables = load_tables(dataset_dir, config)
        preprocessor, network, full = build_model(config, task_meta, tables)
        loss = {"mse": "mse", "mae": "mae", "huber": keras.losses.Huber(delta=1.0)}
        if config.task == "rating":
            compiled_loss = loss[config.loss]
            compiled_metrics = [keras.metrics.MeanAbsoluteError(name="mae"),
                                keras.metrics.RootMeanSquaredError(name="rmse")]
            monitor = "val_mae"
        else:
            compiled_loss = keras.losses.BinaryCrossentropy(from_logits=True)
            compiled_metrics = [keras.metrics.AUC(multi_label=True, from_logits=True,
                                                  num_labels=18, name="auc")]
            monitor = "val_loss"
        network.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                        loss=compiled_loss, metrics=compiled_metrics,
                        jit_compile=config.jit_compile)

    def preprocess(features):
        # Only the features the model uses: the records may hold more (timestamps, ...).
        return preprocessor({name: features[name] for name in preprocessor.input})

    def dataset(split, shuffle=False):
        return tfrecords.make_dataset(dataset_dir, config.task, split, config.batch_size,
                                      shuffle=shuffle, seed=config.seed, in_memory=True,
                                      transform=preprocess)

    train_ds, val_ds, test_ds = dataset("train", True), dataset("validation"), dataset("test")
    throughput = _Throughput(task_meta["splits"]["train"]["examples"])
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(model_dir, "backup")),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=config.patience,
                                      restore_best_weights=True),
        keras.callbacks.TensorBoard(os.path.join(model_dir, "logs")),
        throughput,
    ]
    start = time.perf_counter()
    history = network.fit(train_ds, validation_data=val_ds, epochs=config.epochs,
                          callbacks=callbacks, verbose=verbose)
    wall = time.perf_counter() - start
    results, threshold = evaluate(network, config.task, {"val": val_ds, "test": test_ds})

    full.save(os.path.join(model_dir, "model.keras"))
    output = {
        "task": config.task, "model": config.model, "protocol": config.protocol,
        "seed": config.seed, "epochs_run": len(history.history.get("loss", [])),
        "examples_per_s": round(throughput.examples_per_second(), 1),
        "wall_time_s": round(wall, 1),
        "val": results["val"], "test": results["test"],
        "dataset": {"dir": os.path.abspath(dataset_dir), "fingerprint": meta["fingerprint"]},
        "config": dataclasses.asdict(config),
    }
    if threshold is not None:
        output["threshold"] = threshold
        output["genres"] = list(meta["genres"])
    write_json(os.path.join(model_dir, "metrics.json"), output)
    log(json.dumps({k: output[k] for k in ("task", "model", "val", "test", "examples_per_s",
                                           "wall_time_s")}))
    return output

