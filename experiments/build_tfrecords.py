"""Builds the TFRecords (both tasks, one protocol) from a MovieLens data root.

    python -m experiments.build_tfrecords --data_dir ../shared/data --output_dir artifacts/tfrecords
    python -m experiments.build_tfrecords --data_dir ../shared/data --svd_dim genre=64 \
        --output_dir /tmp/svd64   # then: experiments.train --dataset_dir /tmp/svd64/rel-movielens1m
"""

from absl import app, flags

from deepmix_tf.data import tfrecords

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Data root holding ml-1m/ and/or rel-movielens1m/ "
                    "(default: $DEEPMIX_DATA_DIR, else ~/.cache/deepmix_tf/data).")
flags.DEFINE_string("output_dir", "artifacts/tfrecords", "Where <protocol>/ is written.")
flags.DEFINE_enum("protocol", "rel-movielens1m", list(tfrecords.PROTOCOLS), "Which splits.")
flags.DEFINE_integer("seed", 42, "Seed of the random splits and of the graph SVD.")
flags.DEFINE_integer("num_shards", 4, "Files per training split (validation/test: half). "
                     "The default is what experiments.train builds, so it reuses this build.")
flags.DEFINE_list("svd_dim", [], "task=size pairs overriding the spectral sizes of the "
                  f"per-movie graph tables (default {tfrecords.SVD_DIMS}).")
flags.DEFINE_boolean("force", False, "Rebuild even when sources and options are unchanged.")


def parse_svd_dims(pairs):
    """["genre=64"] -> `SVD_DIMS` with the genre size replaced."""
    dims = dict(tfrecords.SVD_DIMS)
    for pair in pairs:
        task, _, size = pair.partition("=")
        if task not in dims or not size.isdigit() or int(size) < 1:
            raise app.UsageError(f"--svd_dim: expected task=size with task in {sorted(dims)} "
                                 f"and a positive size, got {pair!r}")
        dims[task] = int(size)
    return dims


def main(argv):
    del argv
    tfrecords.build_tfrecords(FLAGS.data_dir, FLAGS.output_dir, protocol=FLAGS.protocol,
                              seed=FLAGS.seed, num_shards=FLAGS.num_shards,
                              svd_dim=parse_svd_dims(FLAGS.svd_dim), force=FLAGS.force)


if __name__ == "__main__":
    app.run(main)
