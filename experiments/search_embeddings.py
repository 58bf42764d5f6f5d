"""AutoDim's search stage: trains a model whose categorical fields have an embedding at
every candidate width, mixed by Gumbel-softmax width logits that train on a held-out slice
of the training split; then writes beside the run:

- `dimensions.json`: each field's chosen width (with `--buckets`, one per frequency bucket
  of its values), the candidates' probabilities, and the tables' size at those widths;
- `retrain_config.json`: the run's config with those widths (`embedding_dims`), for
  `python -m experiments.train --config <model_dir>/retrain_config.json`.

    python -m experiments.search_embeddings --dataset movielens1m-rating --model deepmix \
        --model_dir artifacts/models/autodim-search-rating

Takes every flag of experiments.train, and the search's settings. The architecture
probabilities per epoch are TensorBoard scalars in <model_dir>/logs/architecture.
"""

from absl import app, flags

from experiments import train as train_cli

FLAGS = flags.FLAGS
flags.DEFINE_list("candidates", None, "Candidate widths (default 2,4,8,16,32,64).")
flags.DEFINE_boolean("share_weights", None, "Candidates are slices of one widest table.")
flags.DEFINE_integer("buckets", None, "NIS's frequency buckets per single-id field: a width "
                     "is searched for each (Config.embedding_buckets).")
flags.DEFINE_float("dimension_cost", None, "Weight of the expected table size in the "
                   "held-out loss (Config.dimension_cost).")
flags.DEFINE_list("search_temperature", None, "start,end of the annealed Gumbel-softmax "
                  "temperature.")
flags.DEFINE_float("architecture_learning_rate", None, "The width logits' Adam learning "
                   "rate.")
flags.DEFINE_integer("architecture_warmup_epochs", None, "Epochs of weights alone before "
                     "the width logits train (the model should have learned first).")
flags.DEFINE_integer("holdout_every", None, "Every n-th training example is held out for "
                     "the width logits.")


def main(argv):
    del argv
    import os

    from deepmix_tf.data.spec import load_spec
    from deepmix_tf.models import load_model
    from deepmix_tf.training import dimensions, trainer

    changes = {"embedding_search": "search"}
    if FLAGS.candidates is not None:
        changes["embedding_candidates"] = [int(w) for w in FLAGS.candidates]
    if FLAGS.share_weights is not None:
        changes["embedding_share"] = FLAGS.share_weights
    if FLAGS.buckets is not None:
        changes["embedding_buckets"] = FLAGS.buckets
    if FLAGS.search_temperature is not None:
        changes["search_temperature"] = [float(t) for t in FLAGS.search_temperature]
    for name in ("dimension_cost", "architecture_learning_rate", "architecture_warmup_epochs",
                 "holdout_every"):
        if getattr(FLAGS, name) is not None:
            changes[name] = getattr(FLAGS, name)
    config = train_cli.config_from_flags().replace(**changes)
    name = load_spec(config.dataset).name
    model_dir = FLAGS.model_dir or f"artifacts/models/autodim-search-{config.model}-{name}"
    trainer.train(config, data_dir=FLAGS.data_dir, tfrecord_dir=FLAGS.tfrecord_dir,
                  model_dir=model_dir, verbose=FLAGS.verbose, dataset_dir=FLAGS.dataset_dir)
    widths = dimensions.write_search(model_dir, load_model(os.path.join(model_dir,
                                                                        "model.keras")), config)
    for w in widths:
        if "bucket_rows" not in w:
            chosen = w["probabilities"][str(w["width"])]
            print(f"  {w['field']}: width {w['width']} (p {chosen:.3f}, {w['rows']:,} rows)")
            continue
        for b, (width, p, rows) in enumerate(zip(w["width"], w["probabilities"],
                                                  w["bucket_rows"])):
            print(f"  {w['field']} bucket {b}: width {width} (p {p[str(width)]:.3f}, "
                  f"{rows:,} rows)")
    print(f"table parameters at these widths: {dimensions.table_parameters(widths):,} "
          f"(at width {config.embedding_dim}: "
          f"{sum(w['rows'] for w in widths) * config.embedding_dim:,})")
    print(f"wrote {model_dir}/dimensions.json, retrain_config.json")


if __name__ == "__main__":
    app.run(main)
