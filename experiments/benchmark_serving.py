"""CPU latency and throughput of an exported SavedModel, loaded as TF Serving would (no
Keras, none of our code in the serving path).

    python -m experiments.benchmark_serving --export artifacts/serving/deepmix_rating/1 \
        --tfrecord_dir artifacts/tfrecords/movielens1m-rating

Prints batch-1 latency (p50, p99 over --requests calls) and batch-N throughput, and the
same latency for a trivial SavedModel taking the same inputs: the cost of calling a loaded
signature from Python, which TF Serving's C++ server does not pay. With --evaluate it also
scores the whole test split through the signature (the task's metrics: MAE/RMSE, AUC/log
loss, or micro/macro-F1 at the exported per-label thresholds), to see what an export option
such as --precision=bfloat16 costs.
"""

import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("export", None, "A SavedModel version folder.", required=True)
flags.DEFINE_string("tfrecord_dir", "artifacts/tfrecords/movielens1m-rating",
                    "TFRecord build whose test examples are the requests.")
flags.DEFINE_integer("requests", 2000, "Batch-1 calls timed.")
flags.DEFINE_integer("batch_size", 1024, "Batch size of the throughput run.")
flags.DEFINE_integer("batches", 50, "Batches timed in the throughput run.")
flags.DEFINE_boolean("evaluate", False, "Also score the test split through the signature.")


def main(argv):
    del argv
    import json
    import os

    import tensorflow as tf

    from deepmix_tf.data import tfrecords

    with open(os.path.join(FLAGS.export, "assets.extra", "deepmix_signature.json")) as f:
        signature = json.load(f)
    names = [row[0] for row in signature["inputs"]]
    serve = tf.saved_model.load(FLAGS.export).signatures["serving_default"]
    features, _ = next(iter(tfrecords.make_dataset(FLAGS.tfrecord_dir, "test",
                                                   FLAGS.batch_size)))
    batch = {k: features[k] for k in names}
    single = [{k: v[i:i + 1] for k, v in batch.items()} for i in range(64)]

    def latency(function):
        for request in single[:20]:
            function(**request)
        latencies = []
        for i in range(FLAGS.requests):
            start = time.perf_counter()
            function(**single[i % len(single)])
            latencies.append(time.perf_counter() - start)
        return np.percentile(np.array(latencies) * 1000, [50, 99])

    p50, p99 = latency(serve)
    floor50, floor99 = latency(_trivial_signature(serve))
    for _ in range(3):
        serve(**batch)
    start = time.perf_counter()
    for _ in range(FLAGS.batches):
        serve(**batch)
    seconds = time.perf_counter() - start
    n = len(next(iter(batch.values())))
    print(f"{FLAGS.export}: task {signature['task']['name']}, "
          f"jit_compile {signature.get('jit_compile', False)}, "
          f"precision {signature.get('precision', 'float32')}")
    print(f"batch 1: p50 {p50:.3f} ms, p99 {p99:.3f} ms over {FLAGS.requests} requests")
    print(f"batch 1, trivial SavedModel with the same inputs (Python call cost): "
          f"p50 {floor50:.3f} ms, p99 {floor99:.3f} ms")
    print(f"batch {n}: {n * FLAGS.batches / seconds:,.0f} predictions/s "
          f"({seconds / FLAGS.batches * 1000:.1f} ms per batch)")
    if FLAGS.evaluate:
        scores = _evaluate(serve, signature, names)
        print("test split through the signature: "
              + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))


def _evaluate(serve, signature, names):
    """Test metrics of the exported signature's outputs."""
    from deepmix_tf.data import tfrecords
    from deepmix_tf.tasks import make_task

    task = make_task(signature["task"])
    outputs, labels = {}, []
    for features, y in tfrecords.make_dataset(FLAGS.tfrecord_dir, "test", FLAGS.batch_size):
        for name, value in serve(**{k: features[k] for k in names}).items():
            outputs.setdefault(name, []).append(value.numpy())
        labels.append(y.numpy())
    outputs = {name: np.concatenate(parts) for name, parts in outputs.items()}
    return task.score_serving(np.concatenate(labels), outputs, signature["decision"])


def _trivial_signature(serve):
    """A saved and reloaded signature with `serve`'s inputs that only adds up their sizes."""
    import tempfile

    import tensorflow as tf

    specs = serve.structured_input_signature[1]

    class Trivial(tf.Module):
        @tf.function(input_signature=[specs])
        def __call__(self, features):
            return {"out": tf.add_n([tf.cast(tf.size(t), tf.float32)
                                     for t in features.values()])}

    module = Trivial()
    with tempfile.TemporaryDirectory() as folder:
        tf.saved_model.save(module, folder, signatures=module.__call__.get_concrete_function())
        return tf.saved_model.load(folder).signatures["serving_default"]


if __name__ == "__main__":
    app.run(main)
