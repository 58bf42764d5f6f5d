"""Trains DeepMix or a baseline on a dataset and writes metrics.json beside the model.

    python -m experiments.train --task=rating                  # rel-movielens1m ratings
    python -m experiments.train --task=genre --model=dcn_v2 --epochs=100
    python -m experiments.train --task=rating --protocol=random    # raw ML-1M, random split
    python -m experiments.train --dataset=criteo --model=dlrm      # a shipped spec by name
    python -m experiments.train --dataset=my_spec.json --data_dir=.  # your own data
    python -m experiments.train --config=my_config.json --model_dir=artifacts/models/x
    TF_CONFIG='{...}' python -m experiments.train --strategy=multi_worker   # on every worker

`--task` and `--protocol` name the shipped MovieLens specs (`data.spec.MOVIELENS`);
`--dataset` names any spec. Flags given on the command line override `--config`, which
overrides the spec's presets.
"""

import json

from absl import app, flags

from deepmix_tf.models.config import MODELS
from deepmix_tf.training.distribute import STRATEGIES

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", None, "A dataset spec: a file, or the name of a shipped one "
                    "(deepmix_tf/datasets/: movielens1m-rating, criteo, ...).")
flags.DEFINE_enum("task", "rating", ["rating", "genre"], "MovieLens task (without --dataset).")
flags.DEFINE_enum("protocol", "rel-movielens1m", ["rel-movielens1m", "chronological", "random"],
                  "MovieLens splits (without --dataset): rel-movielens1m's, or raw ML-1M's "
                  "chronological or random ones.")
flags.DEFINE_enum("model", "deepmix", list(MODELS), "Model.")
flags.DEFINE_string("data_dir", None, "Data root of the spec's files (ml-1m/, rel-movielens1m/, "
                    "criteo/; default: $DEEPMIX_DATA_DIR, else ~/.cache/deepmix_tf/data).")
flags.DEFINE_string("tfrecord_dir", "artifacts/tfrecords", "TFRecord builds (made if missing).")
flags.DEFINE_string("dataset_dir", None, "A finished TFRecord build (<tfrecord_dir>/<spec name>, "
                    "e.g. from experiments.build_tfrecords with other options) to use as it "
                    "is, never rebuilt.")
flags.DEFINE_string("model_dir", None, "Output folder (default "
                    "artifacts/models/<model>-<dataset>).")
flags.DEFINE_string("config", None, "JSON file of `Config` fields.")
flags.DEFINE_integer("epochs", None, "Maximum epochs (early stopping may end sooner).")
flags.DEFINE_integer("batch_size", None, "Batch size.")
flags.DEFINE_float("learning_rate", None, "Learning rate.")
flags.DEFINE_enum("optimizer", None, ["adam", "sgd"], "adam, or sgd with sparse embedding "
                  "updates (tables of millions of rows).")
flags.DEFINE_enum("streaming", None, ["auto", "on", "off"], "Stream the TFRecords every epoch "
                  "(on), hold splits in memory (off), or stream splits over 5M examples (auto).")
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
                    "<export_dir>/deepmix_<task name>/<version> after training (chief only).")
flags.DEFINE_integer("verbose", 1, "Keras progress: 0 silent, 1 progress bar, 2 one line/epoch.")


def config_from_flags():
    from deepmix_tf.models.config import check_fields, default_config
    from deepmix_tf.data.spec import movielens_spec

    overrides = {}
    if FLAGS.config:
        with open(FLAGS.config) as f:
            overrides.update(json.load(f))
    # Configurations written before dataset specs name a MovieLens task and protocol.
    task = overrides.pop("task", FLAGS.task)
    protocol = overrides.pop("protocol", FLAGS.protocol)
    if FLAGS["task"].present:
        task = FLAGS.task
    if FLAGS["protocol"].present:
        protocol = FLAGS.protocol
    check_fields(overrides, FLAGS.config or "--config")
    for name in ("epochs", "batch_size", "learning_rate", "seed", "node_embeddings",
                 "node_prior", "optimizer", "streaming"):
        if getattr(FLAGS, name) is not None:
            overrides[name] = getattr(FLAGS, name)
    if FLAGS.dataset:
        overrides["dataset"] = FLAGS.dataset
    elif "dataset" not in overrides or FLAGS["task"].present or FLAGS["protocol"].present:
        overrides["dataset"] = movielens_spec(task, protocol)
    if FLAGS["model"].present or "model" not in overrides:
        overrides["model"] = FLAGS.model
    return default_config(**overrides)


def main(argv):
    del argv
    from deepmix_tf.training import distribute

    # First: a multi-worker strategy must exist before any other TensorFlow work.
    strategy = distribute.make_strategy(FLAGS.strategy)
    from deepmix_tf.training import trainer

    from deepmix_tf.data.spec import load_spec

    config = config_from_flags()
    name = load_spec(config.dataset).name
    model_dir = FLAGS.model_dir or f"artifacts/models/{config.model}-{name}"
    trainer.train(config, data_dir=FLAGS.data_dir, tfrecord_dir=FLAGS.tfrecord_dir,
                  model_dir=model_dir, verbose=FLAGS.verbose, strategy=strategy,
                  dataset_dir=FLAGS.dataset_dir)
    if FLAGS.export_dir and distribute.is_chief(strategy):
        from deepmix_tf.export import export_run

        print(f"exported {export_run(model_dir, FLAGS.export_dir)}")


if __name__ == "__main__":
    app.run(main)
