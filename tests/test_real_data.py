"""The real MovieLens-1M files in ../shared/data (CI has them; elsewhere these skip).

Building and reading a million ratings takes minutes: every test here is slow."""

import os

import numpy as np
import pandas as pd
import pytest

from conftest import require_shared
from deepmix_tf.data import readers, spec, splits, tfrecords

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def real_build(tmp_path_factory):
    """The rel-movielens1m rating and genre builds of the shared data, made once per session."""
    data = require_shared("data")
    out = tmp_path_factory.mktemp("tfrecords")
    return {name: tfrecords.build_tfrecords(name, data, str(out), num_shards=4,
                                            log=lambda _: None)
            for name in ("movielens1m-rating", "movielens1m-genre")}


@pytest.fixture(scope="session")
def real_ml1m():
    """The tables of the raw GroupLens files, read through the ml-1m spec."""
    s = spec.load_spec("ml-1m-rating-chronological")
    return s, readers.read_tables(s, require_shared("data", "ml-1m"))


def test_raw_ml1m_counts(real_ml1m):
    _, frames = real_ml1m
    users, movies, ratings = frames["users"], frames["movies"], frames["ratings"]
    assert (len(users), len(movies), len(ratings)) == (6040, 3883, 1_000_209)
    assert ratings["movie_id"].nunique() == 3706
    # Undated ratings carry the timestamp column's missing value, 0.
    assert (ratings["timestamp"] == 0).sum() == 161_646
    assert np.bincount(ratings["rating"])[1:].tolist() == [
        56_174, 107_557, 261_197, 348_971, 226_310]


def test_rel_movielens1m_tfrecord_counts(real_build):
    counts = {name: [tfrecords.read_metadata(out)["splits"][s]["examples"]
                     for s in splits.SPLITS] for name, out in real_build.items()}
    assert counts == {"movielens1m-rating": [805_443, 97_383, 97_383],
                      "movielens1m-genre": [388, 388, 3_107]}
    genre = real_build["movielens1m-genre"]
    assert len(tfrecords.read_examples(genre, "validation")["movie_id"]) == 388
    meta = tfrecords.read_metadata(genre)
    assert len(meta["task"]["classes"]) == 18
    assert tfrecords.load_dense_table(genre)[0].shape == (3883,)


def test_real_test_split_round_trip(real_build):
    path = os.path.join(require_shared("data", "rel-movielens1m"), "regression", "ratings",
                        "test.csv")
    source = pd.read_csv(path)
    got = tfrecords.read_examples(real_build["movielens1m-rating"], "test")
    np.testing.assert_array_equal(got["user_id"], source["UserID"])
    np.testing.assert_array_equal(got["movie_id"], source["MovieID"])
    np.testing.assert_array_equal(got["rating"], source["Rating"].astype(np.float32))


def test_our_chronological_split_of_real_ml1m(real_ml1m):
    s, frames = real_ml1m
    ratings = frames["ratings"]
    parts = splits.split_examples(ratings, s.split)
    train, test = parts["train"], parts["test"]
    assert sum(map(len, parts.values())) == len(ratings)
    assert abs(len(test) / len(ratings) - 0.1) < 0.01
    # Undated ratings are never a user's latest, so none lands in test.
    assert (test["timestamp"] != 0).all()
    assert (ratings["timestamp"] == 0).sum() == (train["timestamp"] == 0).sum() + (
        parts["validation"]["timestamp"] == 0).sum()
