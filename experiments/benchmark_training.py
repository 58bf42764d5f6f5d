"""Training-step speed of a model's network on one real batch, with and without XLA.

    python -m experiments.benchmark_training --model=deepmix \
        --dataset_dir artifacts/tfrecords/rel-movielens1m

Times `--steps` optimizer steps on a fixed preprocessed batch of the training split (no
input pipeline), after a warm-up, and prints ms/step and examples/s per setting.
"""

import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_enum("task", "rating", ["rating", "genre"], "Task.")
flags.DEFINE_string("model", "deepmix", "Model (see deepmix_tf.models.MODELS).")
flags.DEFINE_string("dataset_dir", "artifacts/tfrecords/rel-movielens1m", "A TFRecord build.")
flags.DEFINE_integer("batch_size", 1024, "Batch size.")
flags.DEFINE_integer("steps", 50, "Timed steps per setting.")
flags.DEFINE_list("jit_compile", ["false", "true"], "XLA settings to time.")


def main(argv):
    del argv
    import keras
    import tensorflow as tf

    from deepmix_tf.data import tfrecords
    from deepmix_tf.models import build_model, load_tables
    from deepmix_tf.training.trainer import default_config

    meta = tfrecords.read_metadata(FLAGS.dataset_dir)["tasks"][FLAGS.task]
    for jit in FLAGS.jit_compile:
        config = default_config(FLAGS.task, FLAGS.model, batch_size=FLAGS.batch_size,
                                jit_compile=jit.lower() == "true")
        preprocessor, network, _ = build_model(config, meta,
                                               load_tables(FLAGS.dataset_dir, config))
        features, labels = next(iter(tfrecords.make_dataset(
            FLAGS.dataset_dir, FLAGS.task, "train", config.batch_size)))
        x = preprocessor({k: features[k] for k in preprocessor.input})
        batches = tf.data.Dataset.from_tensors((x, labels)).repeat(FLAGS.steps)
        network.compile(keras.optimizers.Adam(config.learning_rate), "mse",
                        jit_compile=config.jit_compile)
        network.fit(batches.take(5), verbose=0)  # tracing and compilation
        start = time.perf_counter()
        network.fit(batches, verbose=0)
        seconds = (time.perf_counter() - start) / FLAGS.steps
        print(f"{FLAGS.model} {FLAGS.task} jit_compile={config.jit_compile}: "
              f"{seconds * 1000:.1f} ms/step, {config.batch_size / seconds:,.0f} examples/s")


if __name__ == "__main__":
    app.run(main)
