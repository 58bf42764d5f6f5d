"""AutoFIS's search stage: trains a model with a gate on every pairwise interaction of its
field embeddings (GRDA on the gates, Adam on the rest), then writes beside the run:

- `interactions.json`: every pair with its gate, and whether GRDA left it non-zero;
- `interactions.png`: a field-by-field heat map of the gates;
- `retrain_config.json`: the run's config with only the kept pairs (`autofis="on"`), for
  `python -m experiments.train --config <model_dir>/retrain_config.json`.

    python -m experiments.search_interactions --dataset movielens1m-rating --model deepmix \
        --model_dir artifacts/models/autofis-search-rating

Takes every flag of experiments.train, and the gates' GRDA settings.
"""

from absl import app, flags

from experiments import train as train_cli

FLAGS = flags.FLAGS
flags.DEFINE_float("grda_c", None, "GRDA's sparsity strength c (Config.grda_c).")
flags.DEFINE_float("grda_mu", None, "GRDA's threshold growth mu, in (0.5, 1).")
flags.DEFINE_float("grda_learning_rate", None, "The gates' GRDA learning rate (default: "
                   "--learning_rate).")


def main(argv):
    del argv
    import os

    from deepmix_tf.data.spec import load_spec
    from deepmix_tf.models import load_model
    from deepmix_tf.training import interactions, trainer

    config = train_cli.config_from_flags().replace(autofis="search")
    config = config.replace(**{name: getattr(FLAGS, name) for name in
                               ("grda_c", "grda_mu", "grda_learning_rate")
                               if getattr(FLAGS, name) is not None})
    name = load_spec(config.dataset).name
    model_dir = FLAGS.model_dir or f"artifacts/models/autofis-search-{config.model}-{name}"
    trainer.train(config, data_dir=FLAGS.data_dir, tfrecord_dir=FLAGS.tfrecord_dir,
                  model_dir=model_dir, verbose=FLAGS.verbose, dataset_dir=FLAGS.dataset_dir)
    pairs = interactions.write_search(model_dir, load_model(os.path.join(model_dir,
                                                                         "model.keras")), config)
    kept = [p for p in pairs if p["kept"]]
    print(f"kept {len(kept)} of {len(pairs)} pairs:")
    for p in sorted(kept, key=lambda p: -abs(p["gate"])):
        print(f"  {p['fields'][0]} x {p['fields'][1]}: gate {p['gate']:+.4f}")
    print(f"wrote {model_dir}/interactions.json, interactions.png"
          + (", retrain_config.json" if kept else " (no pair kept: no retrain config)"))


if __name__ == "__main__":
    app.run(main)
