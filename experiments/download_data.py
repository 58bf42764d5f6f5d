"""Downloads MovieLens-1M from GroupLens (md5-checked) into <data_dir>/ml-1m/.

    python -m experiments.download_data --data_dir ~/.cache/deepmix_tf/data

rel-movielens1m is not downloaded: see the message of `--protocol=rel-movielens1m` builds.
"""

from absl import app, flags

from deepmix_tf.data import locate

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Data root (default: $DEEPMIX_DATA_DIR, else the cache).")


def main(argv):
    del argv
    root = locate.resolve_data_dir(FLAGS.data_dir)
    print(f"MovieLens-1M is in {locate.download_ml1m(root)}")


if __name__ == "__main__":
    app.run(main)
