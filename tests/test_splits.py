"""Deterministic splits of an examples table (a spec's `split`), on raw ML-1M and by hand."""

import os

import numpy as np
import pandas as pd
import pytest

from deepmix_tf.data import readers, spec, splits

CHRONOLOGICAL = spec.load_spec("ml-1m-rating-chronological").split
RANDOM = spec.load_spec("ml-1m-rating-random").split


def _ratings(small_data):
    s = spec.load_spec("ml-1m-rating-chronological")
    return readers.read_tables(s, os.path.join(small_data["root"], "ml-1m"))["ratings"]


def _keys(frame):
    return set(zip(frame.user_id, frame.movie_id))


def _parts(frame, split):
    parts = splits.split_examples(frame, split)
    assert list(parts) == list(splits.SPLITS)
    return parts["train"], parts["validation"], parts["test"]


def test_chronological_split_is_a_disjoint_cover(small_data):
    ratings = _ratings(small_data)
    train, val, test = _parts(ratings, CHRONOLOGICAL)
    assert len(train) + len(val) + len(test) == len(ratings)
    assert not (_keys(train) & _keys(val)) and not (_keys(train) & _keys(test))
    assert not (_keys(val) & _keys(test))
    assert _keys(train) | _keys(val) | _keys(test) == _keys(ratings)


def test_chronological_split_respects_time_per_user(small_data):
    ratings = _ratings(small_data)
    train, val, test = _parts(ratings, CHRONOLOGICAL)
    for user, group in ratings.groupby("user_id"):
        t = train[train.user_id == user].timestamp
        v = val[val.user_id == user].timestamp
        s = test[test.user_id == user].timestamp
        assert t.max() <= v.min() <= v.max() <= s.min()
        n = len(group)
        assert len(v) == round(0.1 * n) and len(s) == round(0.1 * n)


def test_split_parts_keep_file_order(small_data):
    ratings = _ratings(small_data)
    for split in (CHRONOLOGICAL, RANDOM):
        for part in _parts(ratings, split):
            assert part[readers.LINE].is_monotonic_increasing
            assert part.index.tolist() == list(range(len(part)))


def test_undated_ratings_count_as_oldest(small_data):
    ratings = _ratings(small_data)  # the first three ratings (user 1) have no timestamp
    train, _, _ = _parts(ratings, CHRONOLOGICAL)
    undated = ratings[ratings.timestamp == 0]
    assert len(undated) == 3 and set(undated.user_id) == {1}
    assert _keys(undated) <= _keys(train)


def test_chronological_parts_by_hand():
    # Key 7: five rows, of which one undated (time 0, the oldest); key 8: ties keep file order.
    key = [7, 8, 7, 7, 8, 7, 8, 7, 8, 8, 8, 8, 8, 8, 8, 8]
    time = [50, 5, 0, 40, 5, 30, 5, 20, 5, 5, 5, 5, 5, 5, 5, 5]
    part = splits.chronological_parts(key, time, (0.6, 0.2, 0.2))
    # Key 7 (5 rows) by time: rows 2 (0), 7 (20), 5 (30), 3 (40), 0 (50): 3 train, 1, 1.
    assert part[[2, 7, 5, 3, 0]].tolist() == [0, 0, 0, 1, 2]
    # Key 8 (11 rows, all at the same time): the last 2 and 2 in file order.
    rows8 = [i for i, k in enumerate(key) if k == 8]
    assert part[rows8].tolist() == [0] * 7 + [1, 1, 2, 2]
    with pytest.raises(ValueError, match="3 fractions summing to 1"):
        splits.chronological_parts(key, time, (0.5, 0.5))


def test_random_split_is_seeded(small_data):
    ratings = _ratings(small_data)
    a = _parts(ratings, RANDOM)
    b = _parts(ratings, RANDOM)
    c = _parts(ratings, {**RANDOM, "seed": RANDOM["seed"] + 1})
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x, y)
    assert not a[0].equals(c[0])
    n = len(ratings)
    assert [len(p) for p in a] == [round(0.8 * n), round(0.1 * n), n - round(0.8 * n)
                                   - round(0.1 * n)]
    assert set().union(*map(_keys, a)) == _keys(ratings)
    np.testing.assert_array_equal(splits.random_parts(n, 1), splits.random_parts(n, 1))
    assert not np.array_equal(splits.random_parts(n, 1), splits.random_parts(n, 2))


def test_random_movie_split_proportions():
    part = splits.random_parts(100, seed=0, fractions=(0.1, 0.1, 0.8))
    assert np.bincount(part).tolist() == [10, 10, 80]
    # The ml-1m genre spec splits movies 10/10/80, like rel-movielens1m.
    movies = pd.DataFrame({"movie_id": np.arange(100)})
    train, val, test = _parts(movies, spec.load_spec("ml-1m-genre").split)
    assert (len(train), len(val), len(test)) == (10, 10, 80)
    assert sorted(np.concatenate([train.movie_id, val.movie_id, test.movie_id])) == list(
        range(100))


def test_ordered_parts_are_contiguous():
    part = splits.ordered_parts(10, (0.6, 0.2, 0.2))
    assert part.tolist() == [0] * 6 + [1] * 2 + [2] * 2
    frame = pd.DataFrame({"x": np.arange(10)})
    train, val, test = _parts(frame, {"type": "ordered", "fractions": [0.6, 0.2, 0.2]})
    assert (train.x.tolist(), val.x.tolist(), test.x.tolist()) == (
        list(range(6)), [6, 7], [8, 9])
    # The last part takes the rounding rest.
    assert np.bincount(splits.ordered_parts(7), minlength=3).tolist() == [6, 1, 0]


def test_file_split_follows_the_split_column(small_data):
    s = spec.load_spec("movielens1m-rating")
    frames = readers.read_tables(s, os.path.join(small_data["root"], "rel-movielens1m"))
    train, val, test = _parts(frames["ratings"], s.split)
    for part, name in zip((train, val, test), splits.SPLITS):
        assert (part[readers.SPLIT] == name).all()
        assert len(part) == len(small_data["rating_split"][name])
    with pytest.raises(ValueError, match="unknown split type"):
        splits.split_examples(frames["ratings"], {"type": "shuffled", "fractions": [1, 1, 1]})
