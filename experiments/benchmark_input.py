"""Measures tf.data read throughput (examples/s) over a split's TFRecords.

    python -m experiments.benchmark_input --dataset_dir artifacts/tfrecords/movielens1m-rating

Reads the split `--epochs` times with the training settings (parse, shuffle, batch, prefetch)
and prints examples/s of each pass; the first pass of a cached dataset also reads the files.
"""

import time

from absl import app, flags

from deepmix_tf.data import tfrecords

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset_dir", "artifacts/tfrecords/movielens1m-rating", "A build folder.")
flags.DEFINE_string("split", "train", "Split to read.")
flags.DEFINE_integer("batch_size", 1024, "Batch size.")
flags.DEFINE_integer("epochs", 3, "Passes over the split.")
flags.DEFINE_boolean("shuffle", True, "Shuffle as in training.")
flags.DEFINE_boolean("cache", False, "Cache the records in memory after the first pass.")
flags.DEFINE_boolean("in_memory", False, "Parse once, then gather shuffled batches in memory.")
flags.DEFINE_boolean("deterministic", True, "Deterministic element order.")


def main(argv):
    del argv
    start = time.perf_counter()
    ds = tfrecords.make_dataset(FLAGS.dataset_dir, FLAGS.split, FLAGS.batch_size,
                                shuffle=FLAGS.shuffle, cache=FLAGS.cache,
                                in_memory=FLAGS.in_memory,
                                deterministic=FLAGS.deterministic)
    print(f"set-up (with --in_memory: reading and parsing the split once): "
          f"{time.perf_counter() - start:.2f} s")
    for epoch in range(FLAGS.epochs):
        start, n = time.perf_counter(), 0
        for _, label in ds:
            n += int(label.shape[0])
        seconds = time.perf_counter() - start
        print(f"epoch {epoch + 1}: {n:,} examples in {seconds:.2f} s = {n / seconds:,.0f} examples/s")


if __name__ == "__main__":
    app.run(main)
