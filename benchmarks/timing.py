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


def time_fit(model, features, labels, steps, warmup_steps, callback_base,
             steps_per_execution=1):
    """Seconds of `steps` optimizer steps of `model.fit` (compiled by the caller), in steady
    state: one `fit` call runs `warmup_steps + steps` steps and a callback notes the time at
    the end of each call into TensorFlow (every `steps_per_execution` steps, the model's
    compile setting); the clock runs from the end of the last warm-up step (tracing, XLA
    compilation, first allocations, `fit`'s own start-up are all before it) to the end of
    the last step.

    The batches cycle in order from memory: the input costs the same for every model.

    Args:
        callback_base: the `Callback` class of the Keras that `model` belongs to
            (`keras.callbacks.Callback`, or `tf.keras.callbacks.Callback` under tf-keras).
        steps_per_execution: the model's `steps_per_execution`; `steps` and `warmup_steps`
            must be multiples of it, so that the clock's ends fall on step boundaries.

    Returns:
        (seconds, loss of the run as Keras reports it, seconds of the whole `fit` call).
    """
    import tensorflow as tf

    for name, value in (("steps", steps), ("warmup_steps", warmup_steps)):
        if value < 1 or value % steps_per_execution:
            raise ValueError(f"{name} ({value}) must be a positive multiple of "
                             f"steps_per_execution ({steps_per_execution})")

    class StepClock(callback_base):
        def __init__(self):
            super().__init__()
            self.ends = {}

        def on_train_batch_end(self, batch, logs=None):
            # Keras gives the index of the last step of the call.
            self.ends[batch] = time.perf_counter()

    clock = StepClock()
    batches = tf.data.Dataset.from_tensor_slices((features, labels)).repeat()
    start = time.perf_counter()
    history = model.fit(batches.take(warmup_steps + steps).prefetch(tf.data.AUTOTUNE),
                        verbose=0, callbacks=[clock])
    fit_seconds = time.perf_counter() - start
    expected = list(range(steps_per_execution - 1, warmup_steps + steps, steps_per_execution))
    if sorted(clock.ends) != expected:
        raise RuntimeError(f"expected step ends {expected[:3]}... ({len(expected)} calls), saw "
                           f"{sorted(clock.ends)[:3]}... ({len(clock.ends)} calls)")
    seconds = clock.ends[warmup_steps + steps - 1] - clock.ends[warmup_steps - 1]
    return seconds, float(history.history["loss"][-1]), fit_seconds


def result(model, seconds, steps, batch_size, loss, **extra):
    """One run's figures, as the worker processes report them."""
    return {"model": model, "steps": steps, "batch_size": batch_size, "seconds": seconds,
            "ms_per_step": 1000 * seconds / steps,
            "examples_per_s": steps * batch_size / seconds, "loss": loss, **extra}


def read_json(path):
    with open(path) as f:
        return json.load(f)


def matmul_gflops(iterations, m=2048, n=1024, p=1024):
    """This machine's float32 matmul rate, GFLOP/s: `iterations` chained (m, n) x (n, p)
    products in one tf.function loop (n == p, so each output feeds the next)."""
    import math

    import tensorflow as tf

    a = tf.random.normal((m, n))
    b = tf.random.normal((n, p)) / math.sqrt(n)  # keeps the chained values' scale

    @tf.function
    def matmuls(x, count):
        for _ in tf.range(count):
            x = tf.matmul(x, b)
        return x

    matmuls(a, tf.constant(2)).numpy()
    start = time.perf_counter()
    matmuls(a, tf.constant(iterations)).numpy()
    return iterations * 2 * m * n * p / (time.perf_counter() - start) / 1e9
