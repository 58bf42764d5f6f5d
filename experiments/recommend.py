"""Top-k items for one user from a trained run.

    python -m experiments.recommend --model_dir artifacts/models/deepmix-rating --user_id 42

prints the user's top 10 items (title, year, score), skipping those the user rated in
training. The user's features come from their first example in the build; `--features`
overrides them (`--features gender=F,age=25`); an id with no example is an unknown user.
`--export artifacts/serving` also exports the run (with its `recommend` signatures) and
answers through the exported SavedModel instead of the Keras model.
"""

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A run folder of experiments.train.", required=True)
flags.DEFINE_string("user_id", None, "The user (the spec's recommend.user column).",
                    required=True)
flags.DEFINE_integer("k", 10, "How many items.")
flags.DEFINE_boolean("include_seen", False, "Also recommend items the user rated in training.")
flags.DEFINE_list("features", [], "name=value overrides of the user's features.")
flags.DEFINE_list("columns", ["title", "year"], "Catalogue columns to print beside the ids "
                  "(those the catalogue has).")
flags.DEFINE_string("export", None, "Export the run under this folder and answer through "
                    "the SavedModel's recommend signature.")


def main(argv):
    del argv
    import tensorflow as tf

    from deepmix_tf.data import tfrecords
    from deepmix_tf.export import export_run
    from deepmix_tf.export import recommend as rec

    recommender, dataset_dir, meta = rec.load_run(FLAGS.model_dir)
    overrides = dict(item.split("=", 1) for item in FLAGS.features)
    features, known = rec.user_features(dataset_dir, meta, FLAGS.user_id, overrides)
    if not known:
        print(f"user {FLAGS.user_id} has no example in {dataset_dir}: an unknown user")
    exclude = None
    if not FLAGS.include_seen:
        users, items, _ = rec.interactions(dataset_dir, meta, "train")
        exclude = rec.seen_items(users, items, features[meta["items"]["user"]])
    if FLAGS.export:
        path = export_run(FLAGS.model_dir, FLAGS.export, recommend=True)
        print(f"exported {path}")
        signature = tf.saved_model.load(path).signatures[
            "recommend" if exclude is None else "recommend_excluding"]
        inputs = {s.name: tf.constant(features[s.name]) for s in recommender.user_specs}
        inputs["k"] = tf.constant(FLAGS.k, tf.int32)
        if exclude is not None:
            inputs["exclude"] = tf.constant(exclude)
        out = signature(**inputs)
        ids, scores = out["item_ids"].numpy(), out["scores"].numpy()
    else:
        ids, scores = recommender.recommend(features, FLAGS.k, exclude)
    catalogue = tfrecords.load_catalogue(dataset_dir, meta)
    key = meta["items"]["key"]
    rows = catalogue.set_index(key)
    columns = [c for c in FLAGS.columns if c in rows.columns]
    print(f"top {FLAGS.k} for {meta['items']['user']} {FLAGS.user_id}"
          + ("" if exclude is None else f", skipping the items they rated in training"))
    print("\t".join(["rank", key, *columns, "score"]))
    for rank, (item, score) in enumerate(zip(ids[0], scores[0]), 1):
        item = item.decode() if isinstance(item, bytes) else item
        shown = [str(rows.at[item, c]) for c in columns] if item in rows.index else [""] * len(
            columns)
        print("\t".join([str(rank), str(item), *shown, f"{score:.4f}"]))


if __name__ == "__main__":
    app.run(main)
