"""Batch-1 latency of a callable (a loaded SavedModel signature, a `tf.function`): the one
timing procedure of the serving benchmark and of the architecture search."""

import time

import numpy as np


def latency_ms(function, requests, calls=2000, warmup=20, percentiles=(50, 99)):
    """Percentiles (ms) of `calls` calls of `function(**request)`, cycling through
    `requests` (dicts of inputs), after `warmup` calls."""
    if not requests:
        raise ValueError("latency_ms needs at least one request")
    for i in range(warmup):
        function(**requests[i % len(requests)])
    seconds = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        function(**requests[i % len(requests)])
        seconds[i] = time.perf_counter() - start
    return tuple(float(p) for p in np.percentile(seconds * 1000, percentiles))


def single_requests(features, count=64):
    """The first `count` rows of a batch of features ({name: tensor}) as batch-1 requests."""
    n = len(next(iter(features.values())))
    return [{k: v[i:i + 1] for k, v in features.items()} for i in range(min(count, n))]


def exported_latency_ms(model_dir, calls=1000):
    """Batch-1 p50 (ms) of a trained run's exported serving signature (`export_run` into a
    temporary folder, loaded as TF Serving loads it), cycling through the first 64
    validation examples of its build."""
    import json
    import os
    import tempfile

    import tensorflow as tf

    from deepmix_tf.data import tfrecords
    from deepmix_tf.export.saved_model import SIGNATURE, export_run

    with open(os.path.join(model_dir, "metrics.json")) as f:
        dataset_dir = json.load(f)["build"]["dir"]
    with tempfile.TemporaryDirectory(prefix="deepmix-latency-") as folder:
        version = export_run(model_dir, folder, "model", warmup_examples=0, recommend=False)
        serve = tf.saved_model.load(version).signatures[SIGNATURE]
        names = list(serve.structured_input_signature[1])
        features, _ = next(iter(tfrecords.make_dataset(dataset_dir, "validation", 64)))
        return latency_ms(serve, single_requests({n: features[n] for n in names}),
                          calls=calls)[0]
