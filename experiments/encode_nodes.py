"""Writes item node embeddings (encoder -> trainable-query decoder) for a dataset whose spec
declares item text (`text`; the genre specs leave the label out of it).

    python -m experiments.encode_nodes --task=genre --data_dir ../shared/data
    python -m experiments.train --task=genre \
        --node_embeddings artifacts/nodes/genre/node_embeddings.npy

    python -m experiments.encode_nodes --task=genre --objective=graph_prior --epochs 12 \
        --pool_sequence --output_dir artifacts/nodes/genre_prior --data_dir ../shared/data
    python -m experiments.train --task=genre --node_prior 5 \
        --node_embeddings artifacts/nodes/genre_prior/node_embeddings.npy

Reuses the existing files when texts, graph, encoder and settings are unchanged.
"""

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", None, "A dataset spec (file or shipped name); default: the "
                    "MovieLens spec of --task.")
flags.DEFINE_enum("task", "rating", ["rating", "genre"], "MovieLens task (without --dataset).")
flags.DEFINE_string("data_dir", None, "Data root of the spec's files.")
flags.DEFINE_string("tfrecord_dir", "artifacts/tfrecords", "TFRecord builds (made if missing).")
flags.DEFINE_string("output_dir", None, "Output folder (default artifacts/nodes/<task> for "
                    "MovieLens, else artifacts/nodes/<dataset>).")
flags.DEFINE_string("preset", None, "Local encoder folder (default: installed all-MiniLM-L6-v2).")
flags.DEFINE_integer("epochs", None, "Contrastive training epochs of the decoder.")
flags.DEFINE_integer("node_dim", None, "Node embedding size.")
flags.DEFINE_integer("seed", None, "Random seed.")
flags.DEFINE_list("targets", None, "Contrastive targets of the node vector: graph, text.")
flags.DEFINE_enum("objective", None, ["contrastive", "graph_prior"], "What the decoder learns: "
                  "contrastive (default; --targets) or graph_prior (predict the movie's "
                  "spectral position in the rating graph from its text; for train "
                  "--node_prior).")
flags.DEFINE_integer("min_ratings", None, "graph_prior: learn from movies with at least this "
                     "many ratings (default 1).")
flags.DEFINE_integer("folds", None, "graph_prior: cross-fitting folds (default 5).")
flags.DEFINE_boolean("pool_sequence", None, "The decoder's projection also reads the "
                     "mean-pooled sentence vector (NodeEncoder(pool_sequence=True)).")
flags.DEFINE_boolean("force", False, "Rebuild even when nothing changed.")


def main(argv):
    del argv
    from deepmix_tf.data import tfrecords
    from deepmix_tf.data.spec import load_spec, movielens_spec
    from deepmix_tf.text.node_embeddings import NodeConfig
    from deepmix_tf.text.pipeline import encode_nodes

    overrides = {k: getattr(FLAGS, k) for k in ("epochs", "node_dim", "seed", "objective",
                                                "min_ratings", "folds", "pool_sequence")
                 if getattr(FLAGS, k) is not None}
    if FLAGS.targets:
        overrides["targets"] = tuple(FLAGS.targets)
    dataset = FLAGS.dataset or movielens_spec(FLAGS.task)
    dataset_dir = tfrecords.build_tfrecords(dataset, FLAGS.data_dir, FLAGS.tfrecord_dir)
    output_dir = FLAGS.output_dir or (f"artifacts/nodes/{FLAGS.task}" if not FLAGS.dataset
                                      else f"artifacts/nodes/{load_spec(dataset).name}")
    encode_nodes(FLAGS.data_dir, dataset_dir, output_dir, preset=FLAGS.preset,
                 config=NodeConfig(**overrides), force=FLAGS.force)


if __name__ == "__main__":
    app.run(main)
