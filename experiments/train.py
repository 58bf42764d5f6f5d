"""Trains DeepMix or a baseline on one task and writes metrics.json beside the model.

    python -m experiments.train --task=rating
    python -m experiments.train --task=genre --model=dcn_v2 --epochs=100
    python -m experiments.train --config=my_config.json --model_dir=artifacts/models/x
    TF_CONFIG='{...}' python -m experiments.train --strategy=multi_worker   # on every worker

Flags given on the command line override `--config`, which overrides the task's defaults.
"""

import dataclasses
import json

from absl import app, flags

from deepmix_tf.data import tfrecords
from deepmix_tf.models.config import MODELS, Config
from deepmix_tf.training.distribute import STRATEGIES

FLAGS = flags.FLAGS
flags.DEFINE_enum("task", "rating", ["rating", "genre"], "Task.")
flags.DEFINE_enum("model", "deepmix", list(MODELS), "Model.")
flags.DEFINE_enum("protocol", "rel-movielens1m", list(tfrecords.PROTOCOLS), "Splits.")
flags.DEFINE_string("data_dir", None, "Data root holding ml-1m/ and/or rel-movielens1m/ "
                    "(default: $DEEPMIX_DATA_DIR, else ~/.cache/deepmix_tf/data).")
flags.DEFINE_string("tfrecord_dir", "artifacts/tfrecords", "TFRecord builds (made if missing).")
flags.DEFINE_string("dataset_dir", None, "A finished TFRecord build (<tfrecord_dir>/<protocol>, "
                    "e.g. from experiments.build_tfrecords with other options) to use as it "
                    "is, never rebuilt.")
flags.DEFINE_string("model_dir", None, "Output folder (default artifacts/models/<model>-<task>).")
flags.DEFINE_string("config", None, "JSON file of `Config` fields.")
flags.DEFINE_integer("epochs", None, "Maximum epochs (early stopping may end sooner).")
flags.DEFINE_integer("batch_size", None, "Batch size.")
flags.DEFINE_float("learning_rate", None, "Adam learning rate.")
flags.DEFINE_integer("seed", None, "Random seed.")
flags.DEFINE_string("node_embeddings", None, "node_embeddings.npy to feed as a dense movie "
                    "feature (from experiments.encode_nodes).")
flags.DEFINE_float("node_prior", None, "With --node_embeddings from `encode_nodes "
                   "--objective=graph_prior`: use them as the text's prior for the graph "
                   "table's spectral columns, as strong as this many ratings (Config.node_prior).")
flags.DEFINE_enum("strategy", "default", list(STRATEGIES),
                  "tf.distribute strategy: default (one device), mirrored (every local "
                  "device), multi_worker (cluster from $TF_CONFIG; see BUILD.md), "
                  "parameter_server (not supported by Keras 3: fails with the reason).")
flags.DEFINE_string("export_dir", None, "Also export a TF Serving SavedModel to "
                    "<export_dir>/deepmix_<task>/<version> after training (chief only).")
flags.DEFINE_integer("verbose", 1, "Keras progress: 0 silent, 1 progress bar, 2 one line/epoch.")


def config_from_flags():
    from deepmix_tf.training.trainer import default_config

    overrides = {}
    if FLAGS.config:
        with open(FLAGS.config) as f:
            overrides.update(json.load(f))
        Config(**{**dataclasses.asdict(Config()), **overrides})  # validates the names
    for name in ("epochs", "batch_size", "learning_rate", "seed", "node_embeddings",
                 "node_prior"):
        if getattr(FLAGS, name) is not None:
            overrides[name] = getattr(FLAGS, name)
    if FLAGS.node_embeddings:
        overrides.setdefault("dense_tables", ["movie_graph", "node"])
    for name in ("task", "model", "protocol"):
        if FLAGS[name].present or name not in overrides:
            overrides[name] = getattr(FLAGS, name)
    return default_config(**overrides)


def main(argv):
    del argv
    from deepmix_tf.training import distribute

    # First: a multi-worker strategy must exist before any other TensorFlow work.
    strategy = distribute.make_strategy(FLAGS.strategy)
    from deepmix_tf.training import trainer

    config = config_from_flags()
    model_dir = FLAGS.model_dir or f"artifacts/models/{config.model}-{config.task}"
    trainer.train(config, data_dir=FLAGS.data_dir, tfrecord_dir=FLAGS.tfrecord_dir,
                  model_dir=model_dir, verbose=FLAGS.verbose, strategy=strategy,
                  dataset_dir=FLAGS.dataset_dir)
    if FLAGS.export_dir and distribute.is_chief(strategy):
        from deepmix_tf.export import export_run

        print(f"exported {export_run(model_dir, FLAGS.export_dir)}")


if __name__ == "__main__":
    app.run(main)
