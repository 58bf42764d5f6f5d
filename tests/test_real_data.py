"""The real MovieLens-1M files in ../shared/data (CI has them; elsewhere these skip)."""


import numpy as np
import pytest

from conftest import require_shared
from deepmix_tf.data import movielens, splits, tfrecords


@pytest.fixture(scope="session")
def real_build(tmp_path_factory):
    """The rel-movielens1m TFRecords of the shared data, built once per test session."""
    data = require_shared("data")
    out = tmp_path_factory.mktemp("tfrecords")
    return tfrecords.build_tfrecords(data, str(out), num_shards=4, log=lambda _: None)


def test_raw_ml1m_counts():
    users, movies, ratings = movielens.load_ml1m(require_shared("data", "ml-1m"))
    assert (len(users), len(movies), len(ratings)) == (6040, 3883, 1_000_209)
    assert ratings["timestamp"].isna().sum() == 161_646
    assert np.bincount(ratings["rating"])[1:].tolist() == [
        56_174, 107_557, 261_197, 348_971, 226_310]


def test_rel_movielens1m_tfrecord_counts(real_build):
    meta = tfrecords.read_metadata(real_build)
    counts = {task: [meta["tasks"][task]["splits"][s]["examples"] for s in movielens.SPLITS]
              for task in ("rating", "genre")}
    assert counts == {"rating": [805_443, 97_383, 97_383], "genre": [388, 388, 3_107]}
    assert len(tfrecords.read_examples(real_build, "genre", "validation")["movie_id"]) == 388


def test_real_test_split_round_trip(real_build):
    root = require_shared("data", "rel-movielens1m")
    source = movielens.load_rel_movielens1m_rating(root).test
    got = tfrecords.read_examples(real_build, "rating", "test")
    np.testing.assert_array_equal(got["user_id"], source["user_id"])
    np.testing.assert_array_equal(got["movie_id"], source["movie_id"])
    np.testing.assert_array_equal(got["rating"], source["rating"].astype(np.float32))


def test_our_chronological_split_of_real_ml1m():
    _, _, ratings = movielens.load_ml1m(require_shared("data", "ml-1m"))
    train, val, test = splits.chronological_split(ratings)
    assert len(train) + len(val) + len(test) == len(ratings)
    assert abs(len(test) / len(ratings) - 0.1) < 0.01
    # Undated ratings are never a user's latest, so none lands in test.
    assert test["timestamp"].notna().all()
