"""Builds the TFRecords (both tasks, one protocol) from a MovieLens data root.

    python -m experiments.build_tfrecords --data_dir ../shared/data --output_dir artifacts/tfrecords
"""

from absl import app, flags

from deepmix_tf.data import tfrecords

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Data root holding ml-1m/ and/or rel-movielens1m/ "
                    "(default: $DEEPMIX_DATA_DIR, else ~/.cache/deepmix_tf/data).")
flags.DEFINE_string("output_dir", "artifacts/tfrecords", "Where <protocol>/ is written.")
flags.DEFINE_enum("protocol", "rel-movielens1m", list(tfrecords.PROTOCOLS), "Which splits.")
flags.DEFINE_integer("seed", 42, "Seed of the random splits and of the graph SVD.")
flags.DEFINE_integer("num_shards", 8, "Files per training split (validation/test: half).")
flags.DEFINE_boolean("force", False, "Rebuild even when sources and options are unchanged.")


def main(argv):
    del argv
    tfrecords.build_tfrecords(FLAGS.data_dir, FLAGS.output_dir, protocol=FLAGS.protocol,
                              seed=FLAGS.seed, num_shards=FLAGS.num_shards, force=FLAGS.force)


if __name__ == "__main__":
    app.run(main)
