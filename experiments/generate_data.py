"""Generates a DLRM-style dataset: random or synthetic bags of categorical indices, dense
features, and a random or planted label (`deepmix_tf.data.generate`).

    python -m experiments.generate_data --output_dir /tmp/gen --rows 1000000 \
        --tables 1000000,1000000 --k 4                       # Parquet + spec.json + TFRecords
    python -m experiments.generate_data --kind synthetic --zipf 1.1 --k_max 8 --nobuild \
        --planted '{"fields": {"cat_0": 1.0}, "pairs": [["cat_1", "cat_2", 2.0]]}'
    python -m experiments.generate_data --kind synthetic --fit_build \
        artifacts/tfrecords/movielens1m-rating --output_dir /tmp/ml-like
    python -m experiments.generate_data --format criteo --rows 45000000 \
        --tables 1000000 --kind synthetic --output_dir /data     # /data/criteo/train.txt

Parquet: train/validation/test.parquet and spec.json in --output_dir, then (unless --nobuild)
the TFRecords of that spec under --tfrecord_dir. Criteo: a Kaggle-shaped train.txt for the
shipped `criteo` spec (13 dense, 26 tables; one --tables size is used for all 26). A planted
label's truth is written as truth.json beside the files.
"""

import time

from absl import app, flags

from deepmix_tf.data import generate

FLAGS = flags.FLAGS
flags.DEFINE_enum("kind", "random", ["random", "synthetic"], "random: uniform indices; "
                  "synthetic: Zipf (--zipf) or fitted (--fit_build) index frequencies.")
flags.DEFINE_enum("format", "parquet", ["parquet", "criteo"], "Files to write.")
flags.DEFINE_string("output_dir", "artifacts/generated", "Where the files go (criteo: the "
                    "data root; the file is <output_dir>/criteo/train.txt).")
flags.DEFINE_integer("rows", 100_000, "Rows in all (split 0.8/0.1/0.1 by --fractions).",
                     lower_bound=3)
flags.DEFINE_integer("num_dense", 13, "Dense columns.", lower_bound=0)
flags.DEFINE_list("tables", None, "Table sizes m, one per categorical field (default: "
                  "4 of 100000; criteo: 26 of 100000, or one size for all 26).")
flags.DEFINE_integer("k", 1, "Indices per bag (fixed).", lower_bound=1)
flags.DEFINE_integer("k_max", None, "If set, each bag's length is drawn from [1, k_max].",
                     lower_bound=1)
flags.DEFINE_enum("dense_dist", "uniform", ["uniform", "normal"], "Dense feature distribution.")
flags.DEFINE_float("zipf", 1.05, "Zipf exponent of --kind synthetic.", lower_bound=0)
flags.DEFINE_string("fit_build", None, "A TFRecord build: synthetic fields fitted to its "
                    "categorical/multi-hot features' training frequencies (replaces --tables).")
flags.DEFINE_string("planted", None, "A planted label: a JSON file or inline JSON "
                    "({fields, pairs, dense, noise, kind, base_rate, dim, seed}).")
flags.DEFINE_list("fractions", ["0.8", "0.1", "0.1"], "Train, validation, test proportions.")
flags.DEFINE_string("name", None, "The spec's name (default: generated-<kind>).")
flags.DEFINE_integer("seed", 0, "Data seed.")
flags.DEFINE_integer("chunk_rows", generate.DEFAULT_CHUNK_ROWS, "Rows generated at a time.",
                     lower_bound=1)
flags.DEFINE_boolean("build", True, "Build the TFRecords of the Parquet spec.")
flags.DEFINE_string("tfrecord_dir", "artifacts/tfrecords", "Where the build goes.")


def make_generator():
    """The `Generator` the flags describe."""
    criteo = FLAGS.format == "criteo"
    if FLAGS.fit_build:
        if FLAGS.kind != "synthetic":
            raise app.UsageError("--fit_build needs --kind synthetic")
        fields = generate.fit_build(FLAGS.fit_build, k=FLAGS.k, k_max=FLAGS.k_max)
    else:
        tables = [int(m) for m in FLAGS.tables or []] or [100_000] * (
            generate.CRITEO_CATEGORICAL if criteo else 4)
        if criteo and len(tables) == 1:
            tables *= generate.CRITEO_CATEGORICAL
        fields = generate.make_fields(
            tables, k=FLAGS.k, k_max=FLAGS.k_max,
            probabilities=FLAGS.zipf if FLAGS.kind == "synthetic" else None)
    return generate.Generator(fields, num_dense=FLAGS.num_dense, dense_dist=FLAGS.dense_dist,
                              planted=FLAGS.planted, seed=FLAGS.seed)


def main(argv):
    del argv
    generator = make_generator()
    start = time.perf_counter()
    result = generate.write_dataset(
        FLAGS.output_dir, generator, FLAGS.rows, file_format=FLAGS.format,
        fractions=[float(x) for x in FLAGS.fractions], chunk_rows=FLAGS.chunk_rows,
        name=FLAGS.name or f"generated-{FLAGS.kind}")
    seconds = time.perf_counter() - start
    if result["truth"]:
        print(f"planted truth: {result['truth']}")
    print(f"generation: {FLAGS.rows:,} rows at {result['rows_per_second']:,.0f} rows/s; "
          f"with writing {FLAGS.rows / seconds:,.0f} rows/s ({seconds:.1f} s)")
    if FLAGS.format == "criteo":
        print(f"wrote {result['files'][0]}; build it with: python -m experiments.build_tfrecords "
              f"--dataset criteo --data_dir {result['data_dir']}")
    elif FLAGS.build:
        from deepmix_tf.data import tfrecords

        tfrecords.build_tfrecords(result["spec"], output_dir=FLAGS.tfrecord_dir)
    else:
        print(f"spec: {result['spec']}; build it with: python -m experiments.build_tfrecords "
              f"--dataset {result['spec']} --output_dir {FLAGS.tfrecord_dir}")


if __name__ == "__main__":
    app.run(main)
