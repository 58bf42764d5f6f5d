"""The search stage of an interaction search, then its report and retraining config beside
the run. Takes every flag of experiments.train, and:

--method autofis (AutoFIS): a gate on every pairwise interaction of the field embeddings
(GRDA on the gates, Adam on the rest). Writes `interactions.json` (every pair with its gate,
and whether GRDA left it non-zero), `interactions.png` (a field-by-field heat map of the
gates) and `retrain_config.json` (only the kept pairs, `autofis="on"`).

--method autogroup (AutoGroup): feature sets per interaction order, chosen by Gumbel-softmax
logits trained on a held-out slice of the training split. Writes `feature_sets.json` (each
set's fields and weights, every field's probability of being in it), `feature_sets.png`
(fields by sets) and `retrain_config.json` (the fixed sets, `autogroup="on"`).

    python -m experiments.search_interactions --dataset movielens1m-rating --model deepmix \
        --model_dir artifacts/models/autofis-search-rating
    python -m experiments.train --config artifacts/models/autofis-search-rating/retrain_config.json
"""

from absl import app, flags

from experiments import train as train_cli

FLAGS = flags.FLAGS
flags.DEFINE_enum("method", "autofis", ["autofis", "autogroup"], "Which search.")
flags.DEFINE_float("grda_c", None, "AutoFIS: GRDA's sparsity strength c (Config.grda_c).")
flags.DEFINE_float("grda_mu", None, "AutoFIS: GRDA's threshold growth mu, in (0.5, 1).")
flags.DEFINE_float("grda_learning_rate", None, "AutoFIS: the gates' GRDA learning rate "
                   "(default: --learning_rate).")
flags.DEFINE_integer("autofis_order", None, "AutoFIS: 3 gates third-order products as "
                     "well as pairs (default 2).")
flags.DEFINE_list("autogroup_orders", None, "AutoGroup: interaction orders (default 2,3).")
flags.DEFINE_integer("autogroup_sets", None, "AutoGroup: feature sets per order.")
flags.DEFINE_list("search_temperature", None, "AutoGroup: start,end of the annealed "
                  "Gumbel-softmax temperature.")
flags.DEFINE_float("architecture_learning_rate", None, "AutoGroup: the set logits' Adam "
                   "learning rate.")
flags.DEFINE_integer("holdout_every", None, "AutoGroup: every n-th training example is held "
                     "out for the set logits.")


def _overrides():
    values = {name: getattr(FLAGS, name) for name in
              ("grda_c", "grda_mu", "grda_learning_rate", "autofis_order", "autogroup_sets",
               "architecture_learning_rate", "holdout_every")
              if getattr(FLAGS, name) is not None}
    if FLAGS.autogroup_orders is not None:
        values["autogroup_orders"] = [int(p) for p in FLAGS.autogroup_orders]
    if FLAGS.search_temperature is not None:
        values["search_temperature"] = [float(t) for t in FLAGS.search_temperature]
    return values


def main(argv):
    del argv
    import os

    from deepmix_tf.data.spec import load_spec
    from deepmix_tf.models import load_model
    from deepmix_tf.training import interactions, trainer

    config = train_cli.config_from_flags().replace(**{FLAGS.method: "search"}, **_overrides())
    name = load_spec(config.dataset).name
    model_dir = FLAGS.model_dir or f"artifacts/models/{FLAGS.method}-search-{config.model}-{name}"
    trainer.train(config, data_dir=FLAGS.data_dir, tfrecord_dir=FLAGS.tfrecord_dir,
                  model_dir=model_dir, verbose=FLAGS.verbose, dataset_dir=FLAGS.dataset_dir)
    model = load_model(os.path.join(model_dir, "model.keras"))
    if FLAGS.method == "autogroup":
        groups = interactions.write_group_search(model_dir, model, config)
        for g in groups:
            print(f"order {g['order']} set {g['set']}: {', '.join(g['fields']) or '(empty)'}")
        kept = any(len(g["fields"]) >= g["order"] for g in groups)
        print(f"wrote {model_dir}/feature_sets.json, feature_sets.png"
              + (", retrain_config.json" if kept else " (no set with enough fields: no retrain config)"))
        return
    pairs = interactions.write_search(model_dir, model, config)
    kept = [p for p in pairs if p["kept"]]
    print(f"kept {len(kept)} of {len(pairs)} pairs:")
    for p in sorted(kept, key=lambda p: -abs(p["gate"])):
        print(f"  {p['fields'][0]} x {p['fields'][1]}: gate {p['gate']:+.4f}")
    print(f"wrote {model_dir}/interactions.json, interactions.png"
          + (", retrain_config.json" if kept else " (no pair kept: no retrain config)"))


if __name__ == "__main__":
    app.run(main)
