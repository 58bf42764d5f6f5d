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

With --recommend it times the `recommend_excluding` signature instead: batch-1 p50/p99 per
user (k=10, each user's training items excluded, the whole catalogue scored) and users/s at
batch 64, beside the floor: catalogue size x the network's multiply-adds per pair (from the
export's `deepmix_signature.json`), at this machine's matmul rate (a 2048x1024 by 1024x1024
product).
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
flags.DEFINE_boolean("recommend", False, "Time the recommend_excluding signature instead.")
flags.DEFINE_integer("users_batch", 64, "Users per request of the recommend throughput run.")


def main(argv):
    del argv
    import json
    import os

    import tensorflow as tf

    from deepmix_tf.data import tfrecords
    from deepmix_tf.export.latency import single_requests

    with open(os.path.join(FLAGS.export, "assets.extra", "deepmix_signature.json")) as f:
        signature = json.load(f)
    if FLAGS.recommend:
        return _recommend(signature)
    names = [row[0] for row in signature["inputs"]]
    serve = tf.saved_model.load(FLAGS.export).signatures["serving_default"]
    features, _ = next(iter(tfrecords.make_dataset(FLAGS.tfrecord_dir, "test",
                                                   FLAGS.batch_size)))
    batch = {k: features[k] for k in names}
    single = single_requests(batch)

    p50, p99 = _latency_ms(serve, single)
    floor50, floor99 = _latency_ms(_trivial_signature(serve), single)
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


def _latency_ms(function, requests):
    """(p50, p99) in ms of --requests calls of `function`, cycling through `requests`."""
    from deepmix_tf.export.latency import latency_ms

    return latency_ms(function, requests, calls=FLAGS.requests)


def _recommend(signature):
    """Latency and throughput of `recommend_excluding`, beside its floor."""
    import tensorflow as tf

    from benchmarks.timing import matmul_gflops
    from deepmix_tf.data import tfrecords
    from deepmix_tf.export import recommend as rec

    about = signature.get("recommend")
    if not about:
        raise SystemExit(f"{FLAGS.export} has no recommend signatures: export a run whose "
                         "build has an item catalogue")
    serve = tf.saved_model.load(FLAGS.export).signatures["recommend_excluding"]
    meta = tfrecords.read_metadata(FLAGS.tfrecord_dir)
    rows = tfrecords.read_examples(FLAGS.tfrecord_dir, "test")
    user_column = meta["items"]["user"]
    _, first = np.unique(rows[user_column], return_index=True)
    first = np.sort(first)[:max(64, FLAGS.users_batch)]
    names = [row[0] for row in about["inputs"] if row[0] not in ("k", "exclude")]
    users, items, _ = rec.interactions(FLAGS.tfrecord_dir, meta, "train")
    exclude = rec.seen_items(users, items, rows[user_column][first])
    k = tf.constant(10, tf.int32)

    def request(part):
        return {**{n: tf.constant(rows[n][first][part]) for n in names}, "k": k,
                "exclude": tf.constant(exclude[part])}

    p50, p99 = _latency_ms(serve, [request(slice(i, i + 1)) for i in range(64)])
    batch = request(slice(0, FLAGS.users_batch))
    serve(**batch)
    start = time.perf_counter()
    for _ in range(FLAGS.batches):
        serve(**batch)
    users_per_s = FLAGS.users_batch * FLAGS.batches / (time.perf_counter() - start)

    n = about["items"]
    macs = rec.multiply_adds(about["network_matmuls"])
    peak = matmul_gflops(200)
    floor_ms = 2 * macs * n / (peak * 1e9) * 1000
    print(f"{FLAGS.export}: recommend_excluding, {n:,} items, k 10, each user's training "
          f"items excluded")
    print(f"batch 1: p50 {p50:.2f} ms, p99 {p99:.2f} ms per user over {FLAGS.requests} "
          "requests")
    print(f"batch {FLAGS.users_batch}: {users_per_s:,.1f} users/s")
    print(f"network: {macs:,} multiply-adds per pair, {macs * n / 1e6:,.1f} M per user")
    print(f"floor at the matmul rate ({peak:,.0f} GFLOP/s, 2048x1024 by 1024x1024): "
          f"{floor_ms:.2f} ms per user; p50 is {p50 / floor_ms:.2f}x it (goal: 2x)")


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
