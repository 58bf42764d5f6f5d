"""The one timing procedure of the training-speed comparison, shared by every model in it.

Both sides of `python -m experiments.benchmark_training --compare_deepctr` (DeepMix with
Keras 3, DeepCTR with tf-keras) call `time_fit`, so both read the same in-memory batches
through the same tf.data pipeline and run Keras' own `fit` loop. This module imports
neither Keras; TensorFlow is imported inside the functions, after the caller has set up its
environment (DeepCTR needs TF_USE_LEGACY_KERAS=1 before TensorFlow loads).
"""

import json
import time

import numpy as np

LABEL = "label"


def save_batches(path, features, labels):
    """Writes the benchmark batches: `features` dict name -> array (n, ...), labels (n,)."""
    np.savez(path, **{f"x.{name}": value for name, value in features.items()},
             **{LABEL: labels})


def load_batches(path, names, batch_size):
    """The batches of `save_batches` as (features dict name -> (num_batches, batch_size, ...),
    labels (num_batches, batch_size)), for the named features only."""
    with np.load(path) as data:
        labels = data[LABEL]
        num_batches = len(labels) // batch_size

        def split(value):
            value = value[:num_batches * batch_size]
            return value.reshape((num_batches, batch_size) + value.shape[1:])

        return {name: split(data[f"x.{name}"]) for name in names}, split(labels)


def time_fit(model, features, labels, steps, warmup_steps):
    """Seconds for `steps` optimizer steps of `model.fit` (compiled by the caller), after
    `warmup_steps` untimed steps (tracing, XLA compilation, first allocations).

    The batches cycle in order from memory: the input costs the same for every model.

    Returns:
        (seconds, loss of the timed steps as Keras reports it).
    """
    import tensorflow as tf

    batches = tf.data.Dataset.from_tensor_slices((features, labels)).repeat()
    model.fit(batches.take(warmup_steps).prefetch(tf.data.AUTOTUNE), verbose=0)
    timed = batches.take(steps).prefetch(tf.data.AUTOTUNE)
    start = time.perf_counter()
    history = model.fit(timed, verbose=0)
    seconds = time.perf_counter() - start
    return seconds, float(history.history["loss"][-1])


def result(model, seconds, steps, batch_size, loss, **extra):
    """One run's figures, as the worker processes report them."""
    return {"model": model, "steps": steps, "batch_size": batch_size, "seconds": seconds,
            "ms_per_step": 1000 * seconds / steps,
            "examples_per_s": steps * batch_size / seconds, "loss": loss, **extra}


def read_json(path):
    with open(path) as f:
        return json.load(f)
