"""Our deterministic splits of raw ML-1M."""

import os

import numpy as np
import pandas as pd

from deepmix_tf.data import movielens, splits


def _ratings(small_data):
    return movielens.load_ml1m(os.path.join(small_data["root"], "ml-1m"))[2]


def _keys(frame):
    return set(zip(frame.user_id, frame.movie_id))


def test_chronological_split_is_a_disjoint_cover(small_data):
    ratings = _ratings(small_data)
    train, val, test = splits.chronological_split(ratings)
    assert len(train) + len(val) + len(test) == len(ratings)
    assert not (_keys(train) & _keys(val)) and not (_keys(train) & _keys(test))
    assert not (_keys(val) & _keys(test))
    assert _keys(train) | _keys(val) | _keys(test) == _keys(ratings)


def test_chronological_split_respects_time_per_user(small_data):
    ratings = _ratings(small_data)
    train, val, test = splits.chronological_split(ratings)
    for user, group in ratings.groupby("user_id"):
        t = train[train.user_id == user].timestamp
        v = val[val.user_id == user].timestamp
        s = test[test.user_id == user].timestamp
        assert t.max() <= v.min() <= v.max() <= s.min()
        n = len(group)
        assert len(v) == round(0.1 * n) and len(s) == round(0.1 * n)


def test_undated_ratings_count_as_oldest(small_data):
    ratings = _ratings(small_data)  # the first three ratings (user 1) have no timestamp
    train, _, _ = splits.chronological_split(ratings)
    undated = ratings[ratings.timestamp.isna()]
    assert len(undated) == 3
    assert _keys(undated) <= _keys(train)


def test_random_split_is_seeded(small_data):
    ratings = _ratings(small_data)
    a = splits.random_split(ratings, seed=1)
    b = splits.random_split(ratings, seed=1)
    c = splits.random_split(ratings, seed=2)
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x, y)
    assert not a[0].equals(c[0])
    n = len(ratings)
    assert [len(p) for p in a] == [round(0.8 * n), round(0.1 * n), n - round(0.8 * n)
                                   - round(0.1 * n)]
    assert set().union(*map(_keys, a)) == _keys(ratings)


def test_random_movie_split_proportions():
    movies = pd.DataFrame({"movie_id": np.arange(100)})
    train, val, test = splits.random_movie_split(movies, seed=0)
    assert (len(train), len(val), len(test)) == (10, 10, 80)
    assert sorted(np.concatenate([train.movie_id, val.movie_id, test.movie_id])) == list(
        range(100))
