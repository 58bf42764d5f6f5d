"""Time to embed every movie text with the pretrained encoder (sentence embeddings).

    python -m experiments.benchmark_text --data_dir ../shared/data [--task=rating]

Prints seconds and texts/s for all movies of rel-movielens1m (3,883), after a warm-up
batch, so the figure is comparable with sentence-transformers' `model.encode(texts)`.
"""

import os
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Data root holding rel-movielens1m/.")
flags.DEFINE_enum("task", "rating", ["rating", "genre"], "Which text template.")
flags.DEFINE_integer("batch_size", 64, "Texts per forward pass.")
flags.DEFINE_integer("limit", 0, "Only the first N texts (0: all).")


def main(argv):
    del argv
    from deepmix_tf.data import locate, movielens
    from deepmix_tf.text import SentenceEncoder, movie_texts, text_fields

    movies = movielens.read_movies_csv(
        os.path.join(locate.rel_movielens1m_dir(FLAGS.data_dir), "regression", "movies.csv"))
    texts = movie_texts(movies, text_fields(FLAGS.task))
    texts = texts[:FLAGS.limit] if FLAGS.limit else texts
    encoder = SentenceEncoder()
    encoder.embed(texts[:FLAGS.batch_size], batch_size=FLAGS.batch_size)  # warm-up
    start = time.perf_counter()
    embeddings = encoder.embed(texts, batch_size=FLAGS.batch_size)
    seconds = time.perf_counter() - start
    print(f"embedded {len(texts)} texts ({embeddings.shape[1]} dims) in {seconds:.1f} s: "
          f"{len(texts) / seconds:.1f} texts/s, batch {FLAGS.batch_size}")


if __name__ == "__main__":
    app.run(main)
