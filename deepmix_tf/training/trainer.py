"""One training run: TFRecords -> tf.data -> model -> fit -> evaluation -> files.

Writes into `model_dir`: `config.json`, `model.keras` (raw features in, prediction out),
`metrics.json`, `history.csv` (one row per epoch, across restarts), TensorBoard logs in
`logs/`, and `backup/` while training runs (so a killed run resumes from its last finished
epoch). Under a multi-worker strategy only the chief writes them.
"""

import dataclasses
import hashlib
import json
import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from deepmix_tf import tasks
from deepmix_tf.data import locate, tfrecords
from deepmix_tf.data.spec import load_spec
from deepmix_tf.files import write_json
from deepmix_tf.layers.embedding import SparseSGD
from deepmix_tf.optimizers import GatedAdam
from deepmix_tf.models import build_model, load_tables
from deepmix_tf.models.stacking import embedding_parameters
# Re-exported: callers build a run's configuration from here.
from deepmix_tf.models.config import STREAM_ABOVE, Config, default_config  # noqa: F401
from deepmix_tf.training import architecture, distribute


def resolve_dataset(config, data_dir, tfrecord_dir, log=print, build=True, timeout=1800):
    """The TFRecord build of the run's dataset spec: built (or found up to date) from the
    data; an existing build is used as it is when the source data is absent.

    With `build=False` (workers other than the chief) it waits up to `timeout` seconds for
    another process to finish an up-to-date build instead of writing one itself.
    """
    spec = load_spec(config.dataset)
    existing = tfrecords.build_dir(spec, tfrecord_dir)
    deadline = time.monotonic() + timeout
    try:
        if build:
            return tfrecords.build_tfrecords(spec, data_dir, tfrecord_dir, log=log)
        while not tfrecords.up_to_date_build(spec, data_dir, tfrecord_dir):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no up-to-date TFRecord build appeared in {existing} "
                                   f"within {timeout} s (the chief builds it)")
            time.sleep(1)
        return existing
    except locate.DataNotFoundError:
        if os.path.isfile(os.path.join(existing, tfrecords.METADATA)):
            log(f"no source data found; using the existing build {existing}")
            return existing
        raise


class _Backup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` for one process or a cluster: every worker restores from the
    backup folder (which must be storage they all see) and the chief alone writes and
    deletes it; the epoch the run resumed at is kept for metrics.json.

    Other workers still save, to `scratch_dir`: under `MultiWorkerMirroredStrategy`
    reading some variables is a collective operation every worker must take part in.
    """

    def __init__(self, backup_dir, chief=True, scratch_dir=None):
        # Two generations: a process killed while writing leaves the previous one intact.
        super().__init__(backup_dir, double_checkpoint=True)
        self.chief = chief
        self.scratch_dir = scratch_dir
        self.resumed_at_epoch = 0

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.resumed_at_epoch = int(self.model._initial_epoch or 0)

    def _save_model(self):
        if self.chief:
            super()._save_model()
        else:
            self.model.save_weights(os.path.join(self.scratch_dir, "latest.weights.h5"),
                                    overwrite=True)

    def on_train_end(self, logs=None):
        if self.chief:
            super().on_train_end(logs)


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


class _Validation(keras.callbacks.Callback):
    """Validation metrics computed by this process on the whole validation split, put in
    the epoch logs as `val_*` for the callbacks after it (early stopping, history, ...).

    For multi-worker runs: there Keras 3 (3.15) misreports the metrics it aggregates over
    workers, while every worker has the same weights, so each can compute the exact
    metrics of the whole split alone and all stop at the same epoch.
    """

    def __init__(self, dataset, task, loss):
        super().__init__()
        self.dataset, self.task, self.loss = dataset, task, keras.losses.get(loss)

    def on_epoch_end(self, epoch, logs=None):
        y, p = _predict(self.model, self.dataset)
        regularization = float(sum(np.asarray(x) for x in self.model.losses))
        loss = float(np.mean(np.asarray(self.loss(y.reshape(p.shape), p))))
        logs["val_loss"] = loss + regularization
        logs.update(self.task.validation_logs(y, p))


def _predict(model, dataset):
    predictions, labels = [], []
    for features, label in dataset:
        predictions.append(np.asarray(model(features, training=False)))
        labels.append(label.numpy())
    return np.concatenate(labels), np.concatenate(predictions)


def evaluate(network, task, datasets):
    """Metrics of every split in `datasets` ({"val": ds, "test": ds}), and the task's
    decision rule chosen on "val" (or None): see `Task.evaluate`."""
    return task.evaluate({name: _predict(network, ds) for name, ds in datasets.items()})


def weights_digest(model):
    """SHA-256 of a model's weights (values, shapes and order)."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        weight = np.ascontiguousarray(weight)
        digest.update(f"{weight.dtype}{weight.shape}".encode())
        digest.update(weight.tobytes())
    return digest.hexdigest()


def train(config, data_dir=None, tfrecord_dir="artifacts/tfrecords",
          model_dir="artifacts/models/run", log=print, verbose="auto", strategy=None,
          dataset_dir=None):
    """Trains, evaluates and saves one model.

    Args:
        config: `Config`. `batch_size` is the global batch, split over the replicas.
        data_dir: data root (see `locate.resolve_data_dir`).
        tfrecord_dir: where the TFRecord builds live (built when missing or stale).
        model_dir: where the run's files go (written by the chief only).
        log: callable taking a str.
        verbose: Keras `fit` verbosity.
        strategy: `tf.distribute.Strategy` or None (see `distribute.make_strategy`). Under a
            multi-worker strategy every worker calls `train` with the same arguments.
        dataset_dir: a finished TFRecord build (e.g. one made with other options by
            `build_tfrecords`) to use as it is, never rebuilt; when set, `data_dir` and
            `tfrecord_dir` are not used.

    Returns:
        The metrics dict (the chief also writes it to `metrics.json`).
    """
    keras.utils.set_random_seed(config.seed)
    chief = distribute.is_chief(strategy)
    if chief:
        return _train(config, data_dir, tfrecord_dir, model_dir, log, verbose, strategy, True,
                      model_dir, dataset_dir)
    # Workers other than the chief write what they must (see `_Backup`) to a scratch
    # folder that is removed afterwards.
    with tempfile.TemporaryDirectory(prefix="deepmix-worker-") as scratch:
        return _train(config, data_dir, tfrecord_dir, model_dir, log, verbose, strategy,
                      False, scratch, dataset_dir)


def make_optimizer(config):
    """The configured optimizer (`Config.optimizer`); AutoFIS's search gives its gates to
    GRDA (`optimizers.GatedAdam`)."""
    if config.autofis == "search":
        if config.optimizer != "adam":
            raise ValueError("autofis='search' trains with Adam beside the gates' GRDA; "
                             f"got optimizer={config.optimizer!r}")
        return GatedAdam(config.learning_rate, gate_learning_rate=config.grda_learning_rate,
                         c=config.grda_c, mu=config.grda_mu)
    if config.optimizer == "sgd":
        return SparseSGD(config.learning_rate)
    return keras.optimizers.Adam(config.learning_rate)


def table_columns(dataset_dir, meta):
    """{dense table: its column names}, for `numeric_fields` of the form "<table>/<column>"."""
    return {name: tfrecords.load_dense_table(dataset_dir, name, with_names=True)[2]
            for name in meta["dense_tables"]}


def _training_batches(dataset_dir, max_rows, batch_size=65_536):
    """The training split's feature batches, in file order, until `max_rows` rows have
    come (the last batch may pass it)."""
    rows = 0
    for batch, label in tfrecords.make_dataset(dataset_dir, "train", batch_size):
        yield batch
        rows += int(label.shape[0])
        if rows >= max_rows:
            return


def numeric_boundaries(dataset_dir, meta, config, max_rows=1_000_000):
    """{numeric feature: the inner edges of `config.numeric_buckets` equal-frequency buckets}
    of its transformed values in the training split (its first `max_rows` rows), for
    `numeric_embedding="buckets"`."""
    from deepmix_tf.models import feature_names
    from deepmix_tf.models.preprocessing import NumericTransform

    features = {f["name"]: f for f in meta["features"]}
    columns = [n for n in config.numeric_fields or [] if "/" in n]
    if columns:
        raise ValueError(f"numeric_embedding='buckets' applies to numeric features, not to "
                         f"dense-table columns {columns} (use 'autodis')")
    names = [n for n in feature_names(config, meta) if features[n]["type"] == "numeric"
             and (config.numeric_fields is None or n in config.numeric_fields)]
    if not names:
        return {}
    values = {n: [] for n in names}
    for batch in _training_batches(dataset_dir, max_rows):
        for n in names:
            f = features[n]
            values[n].append(np.asarray(NumericTransform(f["clip"], f["transform"], f["mean"],
                                                         f["std"])(batch[n])))
    levels = np.arange(1, config.numeric_buckets) / config.numeric_buckets
    return {n: sorted(set(np.quantile(np.concatenate(v), levels).astype(float).tolist()))
            for n, v in values.items()}


def frequency_buckets(dataset_dir, meta, config, max_rows=10_000_000):
    """{single-id categorical feature: each embedding row's frequency bucket} (NIS's
    search space, `Config.embedding_buckets`), from the rows' counts in the training split
    (its first `max_rows` rows) after the model's own lookups."""
    from deepmix_tf.layers import frequency_buckets as buckets_of
    from deepmix_tf.models import feature_names
    from deepmix_tf.models.preprocessing import build_preprocessor
    from deepmix_tf.models.stacking import embedding_rows

    features = {f["name"]: f for f in meta["features"]}
    names = [n for n in feature_names(config, meta) if features[n]["type"] == "categorical"]
    if not names:
        return {}
    lookup = build_preprocessor(meta, names)
    counts = {n: np.zeros(embedding_rows(features[n]), np.int64) for n in names}
    for batch in _training_batches(dataset_dir, max_rows):
        index = lookup({n: batch[n] for n in lookup.input})
        for n in names:
            counts[n] += np.bincount(np.asarray(index[n]).ravel(), minlength=len(counts[n]))
    return {n: buckets_of(c, config.embedding_buckets) for n, c in counts.items()}


def model_meta(config, dataset_dir, meta=None):
    """The build's metadata with what `build_model` needs of the training split for
    `config`: the table columns, numeric bucket boundaries and frequency buckets."""
    meta = meta or tfrecords.read_metadata(dataset_dir)
    if config.numeric_embedding != "raw":
        meta = {**meta, "table_columns": table_columns(dataset_dir, meta)}
    if config.numeric_embedding == "buckets":
        meta = {**meta, "numeric_boundaries": numeric_boundaries(dataset_dir, meta, config)}
    if config.uses_frequency_buckets():
        meta = {**meta, "frequency_buckets": frequency_buckets(dataset_dir, meta, config)}
    return meta


def streams(config, meta):
    """Whether training streams the build's files rather than holding splits in memory."""
    if config.streaming == "auto":
        return meta["splits"]["train"]["examples"] > STREAM_ABOVE
    return config.streaming == "on"


def _train(config, data_dir, tfrecord_dir, model_dir, log, verbose, strategy, chief,
           out_dir, dataset_dir=None):
    workers = distribute.num_workers(strategy)
    if chief:
        os.makedirs(model_dir, exist_ok=True)
        config.to_json(os.path.join(model_dir, "config.json"))
    if dataset_dir is None:
        dataset_dir = resolve_dataset(config, data_dir, tfrecord_dir, log, build=chief)
    meta = tfrecords.read_metadata(dataset_dir)
    spec_name = load_spec(config.dataset).name
    if meta.get("dataset") != spec_name:
        raise ValueError(f"{dataset_dir} is a build of {meta.get('dataset')!r}; the run's "
                         f"dataset is {spec_name!r}")
    task = tasks.make_task(meta["task"])
    if strategy is None:
        strategy = tf.distribute.get_strategy()
    meta = model_meta(config, dataset_dir, meta)
    with strategy.scope():
        tables = load_tables(dataset_dir, config, meta)
        preprocessor, network, full = build_model(config, meta, tables)
        compiled_loss = task.loss(config)
        network.compile(optimizer=make_optimizer(config),
                        loss=compiled_loss, metrics=task.train_metrics(),
                        jit_compile=config.jit_compile,
                        steps_per_execution=config.steps_per_execution)

    def preprocess(features):
        # Only the features the model uses: the records may hold more (timestamps, ...).
        return preprocessor({name: features[name] for name in preprocessor.input})

    in_memory = not streams(config, meta)

    def dataset(split, shuffle=False, batch_size=config.batch_size, input_context=None,
                repeat=False, part=None):
        return tfrecords.make_dataset(dataset_dir, split, batch_size,
                                      shuffle=shuffle, seed=config.seed, in_memory=in_memory,
                                      transform=preprocess, input_context=input_context,
                                      repeat=repeat, part=part,
                                      holdout_every=config.holdout_every)

    # A search (of architecture weights, or over a supernet) holds out a slice of the training
    # split for the architecture.
    search = config.searches_architecture()
    holdout = config.holds_out()
    if holdout and not distribute.is_default(strategy):
        raise ValueError("an architecture search (autogroup or embedding_search 'search', "
                         "or a nas supernet) runs in one process, without a distribution "
                         "strategy")

    train_examples = meta["splits"]["train"]["examples"]
    steps_per_epoch = None
    if distribute.is_default(strategy):
        train_ds = dataset("train", True, part="rest" if holdout else None)
        val_ds = dataset("validation")
    else:
        # Each worker reads its share of the training files, batches of the per-replica
        # size. Workers' shares differ in size while synchronous steps must match, so with
        # several workers the shares repeat and an epoch is a fixed number of steps.

        def train_fn(context):
            return dataset("train", True, context.get_per_replica_batch_size(config.batch_size),
                           input_context=context, repeat=workers > 1)

        def val_fn(context):
            return dataset("validation",
                           batch_size=context.get_per_replica_batch_size(config.batch_size))

        train_ds = strategy.distribute_datasets_from_function(train_fn)
        val_ds = strategy.distribute_datasets_from_function(val_fn)
        if workers > 1:
            steps_per_epoch = -(-train_examples // config.batch_size)
            val_ds = None  # see `_Validation`
    # A search trains the ordinary weights on the training split less its held-out slice.
    throughput = _Throughput(round(train_examples * (1 - 1 / config.holdout_every)) if holdout
                             else train_examples)
    history_csv = os.path.join(model_dir, "history.csv")
    backup = _Backup(os.path.join(model_dir, "backup"), chief=chief, scratch_dir=out_dir)
    if chief and not os.path.isdir(backup.backup_dir) and os.path.exists(history_csv):
        os.remove(history_csv)  # a new run, not a resumed one
    searcher = (architecture.ArchitectureSearch(
        dataset("train", True, repeat=True, part="held"), compiled_loss,
        config.architecture_learning_rate, config.epochs, config.search_temperature,
        config.architecture_warmup_epochs, config.dimension_cost,
        os.path.join(model_dir, "logs", "architecture") if chief else None)
        if search else None)
    sampler = None
    if config.trains_supernet():
        from deepmix_tf.nas.network import SUPERNET, SupernetSampler

        if config.steps_per_execution != 1:
            raise ValueError("supernet training samples an architecture per step: "
                             "steps_per_execution must be 1")
        sampler = SupernetSampler(network.get_layer(SUPERNET), seed=config.seed)
    callbacks = [
        # First: its epoch end sets the reference architecture that validation then scores.
        *([sampler] if sampler else []),
        *([_Validation(dataset("validation"), task, compiled_loss)] if val_ds is None
          else []),
        # The history row of an epoch is written before its backup: a kill between the two
        # repeats that epoch's row rather than losing it.
        *([keras.callbacks.CSVLogger(history_csv, append=True),
           keras.callbacks.TensorBoard(os.path.join(model_dir, "logs"))] if chief else []),
        backup,
        keras.callbacks.EarlyStopping(monitor=task.monitor, patience=config.patience,
                                      restore_best_weights=True),
        throughput,
        # After EarlyStopping: the search keeps its last architecture (see its docstring).
        *([searcher] if search else []),
    ]
    if not distribute.is_default(strategy):
        # Keras 3 tries to average a first batch over replicas before `fit`, which fails
        # for dict features (keras-team/keras#20329). Our model is already built, so that
        # step has nothing to do: without a strategy of its own the model skips it and
        # takes the strategy of the scope `fit` runs in.
        network._distribute_strategy = None
        distribute.patch_keras_for_multi_worker()
    start = time.perf_counter()
    with strategy.scope():
        history = network.fit(train_ds, validation_data=val_ds, epochs=config.epochs,
                              steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                              verbose=verbose)
    wall = time.perf_counter() - start
    output = {
        "dataset": meta["dataset"], "task": task.name, "task_type": task.type,
        "model": config.model, "protocol": meta["protocol"], "seed": config.seed,
        "epochs_run": backup.resumed_at_epoch + len(history.history.get("loss", [])),
        "resumed_at_epoch": backup.resumed_at_epoch,
        "examples_per_s": round(throughput.examples_per_second(), 1),
        "wall_time_s": round(wall, 1),
        "strategy": distribute.describe(strategy),
        # Replicas of one synchronous run end with the same weights: this tells at a glance.
        "weights_sha256": weights_digest(network),
        "parameters": int(network.count_params()),
        "embedding_parameters": embedding_parameters(network),
    }
    if searcher is not None:
        output["architecture_search"] = {"holdout_every": config.holdout_every,
                                         "steps": searcher.steps}
    if sampler is not None:
        output["supernet"] = {"holdout_every": config.holdout_every,
                              "architectures_sampled": sampler.sampled}
    # Every worker evaluates and saves (reading variables may be collective); only the
    # chief's files are kept.
    results, decision = evaluate(network, task,
                                 {"val": dataset("validation"), "test": dataset("test")})
    full.save(os.path.join(out_dir, "model.keras"))
    if not chief:
        log(json.dumps({k: output[k] for k in ("strategy", "epochs_run", "weights_sha256")}))
        return output
    output.update({
        "val": results["val"], "test": results["test"],
        "build": {"dir": os.path.abspath(dataset_dir), "fingerprint": meta["fingerprint"]},
        "config": dataclasses.asdict(config),
    })
    if decision is not None:
        # The decision rule the export applies, chosen on validation.
        output["decision"] = decision
    write_json(os.path.join(model_dir, "metrics.json"), output)
    log(json.dumps({k: output[k] for k in ("task", "model", "val", "test", "examples_per_s",
                                           "wall_time_s", "strategy", "weights_sha256")}))
    return output
