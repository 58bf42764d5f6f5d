"""Downloads a dataset into the data root: MovieLens-1M from GroupLens (md5-checked) into
<data_dir>/ml-1m/, or Criteo's Kaggle data into <data_dir>/criteo/.

    python -m experiments.download_data --data_dir ~/.cache/deepmix_tf/data
    python -m experiments.download_data --dataset criteo

rel-movielens1m is not downloaded: see the message of a build that misses it.
"""

from absl import app, flags

from deepmix_tf.data import locate

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Data root (default: $DEEPMIX_DATA_DIR, else the cache).")
flags.DEFINE_enum("dataset", "ml-1m", ["ml-1m", "criteo"], "Which dataset.")


def main(argv):
    del argv
    root = locate.resolve_data_dir(FLAGS.data_dir)
    if FLAGS.dataset == "criteo":
        print(f"Criteo is in {locate.download_criteo(root)}")
    else:
        print(f"MovieLens-1M is in {locate.download_ml1m(root)}")


if __name__ == "__main__":
    app.run(main)
