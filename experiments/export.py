"""Exports a trained run as a SavedModel for TensorFlow Serving.

    python -m experiments.export --model_dir artifacts/models/deepmix-rating \
        --export_dir artifacts/serving --model_name deepmix_rating

writes artifacts/serving/deepmix_rating/<version>/ (next free version unless --version).
"""

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A run folder of experiments.train.", required=True)
flags.DEFINE_string("export_dir", "artifacts/serving", "Base folder of exported models.")
flags.DEFINE_string("model_name", None, "Serving model name (default deepmix_<task>).")
flags.DEFINE_integer("version", None, "Version number (default: next free one).")
flags.DEFINE_boolean("jit_compile", False, "Compile the network with XLA (TF Serving then "
                     "needs --xla_cpu_compilation_enabled=true).")
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"],
                  "Weights and arithmetic of the network behind the lookups; bfloat16 is "
                  "faster on CPUs with AVX512_BF16 or AMX.")


def main(argv):
    del argv
    from deepmix_tf.export import export_run

    path = export_run(FLAGS.model_dir, FLAGS.export_dir, FLAGS.model_name, FLAGS.version,
                      jit_compile=FLAGS.jit_compile, precision=FLAGS.precision)
    print(f"exported {path}")


if __name__ == "__main__":
    app.run(main)
