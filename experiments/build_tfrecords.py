"""Builds the TFRecords of a dataset spec.

    python -m experiments.build_tfrecords --data_dir ../shared/data   # rel-movielens1m ratings
    python -m experiments.build_tfrecords --dataset movielens1m-genre --data_dir ../shared/data
    python -m experiments.build_tfrecords --dataset my_spec.json
    python -m experiments.build_tfrecords --dataset movielens1m-genre --svd_dim 64 \
        --output_dir /tmp/svd64
    python -m experiments.train --task=genre --dataset_dir /tmp/svd64/movielens1m-genre
"""

from absl import app, flags

from deepmix_tf.data import tfrecords
from deepmix_tf.data.spec import builtin_specs

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "movielens1m-rating", "A dataset spec: a file, or a shipped "
                    f"spec's name ({', '.join(builtin_specs())}).")
flags.DEFINE_string("data_dir", None, "Data root of the spec's files (default: "
                    "$DEEPMIX_DATA_DIR, else ~/.cache/deepmix_tf/data).")
flags.DEFINE_string("output_dir", "artifacts/tfrecords", "Where <spec name>/ is written.")
flags.DEFINE_integer("num_shards", 4, "Files per training split (validation/test: half). "
                     "The default is what experiments.train builds, so it reuses this build.")
flags.DEFINE_integer("svd_dim", None, "Overrides the spectral size of the spec's interaction "
                     "graph tables.", lower_bound=1)
flags.DEFINE_enum("compression", "GZIP", ["GZIP", "none"], "Record compression.")
flags.DEFINE_enum("streaming", "auto", ["auto", "on", "off"], "Build chunk by chunk in "
                  "bounded memory (on; auto: when the spec allows, see deepmix_tf.data.stream) "
                  "or read whole tables (off).")
flags.DEFINE_boolean("force", False, "Rebuild even when spec, sources and options are "
                     "unchanged.")


def main(argv):
    del argv
    tfrecords.build_tfrecords(FLAGS.dataset, FLAGS.data_dir, FLAGS.output_dir,
                              num_shards=FLAGS.num_shards, svd_dim=FLAGS.svd_dim,
                              force=FLAGS.force,
                              compression="" if FLAGS.compression == "none" else "GZIP",
                              streaming={"auto": "auto", "on": True, "off": False}[
                                  FLAGS.streaming])


if __name__ == "__main__":
    app.run(main)
