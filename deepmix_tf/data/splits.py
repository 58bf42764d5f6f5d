"""Deterministic train/validation/test splits of raw ML-1M, so that users of the genuine
GroupLens files get a protocol like rel-movielens1m's.

- `chronological_split`: per user, the oldest 80% of ratings train, the next 10% validation,
  the latest 10% test (the rel-movielens1m regression protocol).
- `random_split`: a seeded random 80/10/10 permutation of all ratings.
- `random_movie_split`: movies for the genre task, 10/10/80 like rel-movielens1m.
"""

import numpy as np


def _fractions_to_counts(n, fractions):
    """Splits n items into len(fractions) counts; the last part takes the rounding rest."""
    counts = [int(round(n * f)) for f in fractions[:-1]]
    return counts + [n - sum(counts)]


def chronological_split(ratings, fractions=(0.8, 0.1, 0.1)):
    """Per-user chronological split.

    Within each user, ratings are ordered by timestamp; a rating without a timestamp counts
    as older than every dated one (in the shared copy of ML-1M none of them is a user's
    latest rating), and ties keep file order. Each user's validation and test parts are
    `round(n * fraction)` of their n ratings, so users with few ratings still get some.

    Args:
        ratings: DataFrame with `user_id` and nullable `timestamp` columns.
        fractions: (train, validation, test) fractions, summing to 1.

    Returns:
        (train, validation, test) DataFrames, each in the input's row order.
    """
    if not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must sum to 1, got {fractions}")
    user = ratings["user_id"].to_numpy()
    ts = ratings["timestamp"]
    present = ts.notna().to_numpy()
    # Undated ratings sort first: key -1 is below every epoch second.
    key = np.where(present, ts.fillna(0).to_numpy(dtype=np.int64), -1)
    order = np.lexsort((np.arange(len(user)), key, user))
    sorted_user = user[order]
    starts = np.flatnonzero(np.r_[True, sorted_user[1:] != sorted_user[:-1]])
    sizes = np.diff(np.r_[starts, len(user)])
    rank = np.arange(len(user)) - np.repeat(starts, sizes)
    n_val = np.rint(sizes * fractions[1]).astype(np.int64)
    n_test = np.rint(sizes * fractions[2]).astype(np.int64)
    n_train = sizes - n_val - n_test
    part_sorted = np.where(rank < np.repeat(n_train, sizes), 0,
                           np.where(rank < np.repeat(n_train + n_val, sizes), 1, 2))
    part = np.empty_like(part_sorted)
    part[order] = part_sorted
    return tuple(ratings[part == i].reset_index(drop=True) for i in range(3))


def random_split(frame, seed, fractions=(0.8, 0.1, 0.1)):
    """A seeded random split of the rows of `frame` into parts of the given fractions.

    Returns:
        One DataFrame per fraction, each in the input's row order.
    """
    if not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must sum to 1, got {fractions}")
    n = len(frame)
    permutation = np.random.default_rng(seed).permutation(n)
    part = np.empty(n, dtype=np.int64)
    start = 0
    for i, count in enumerate(_fractions_to_counts(n, fractions)):
        part[permutation[start:start + count]] = i
        start += count
    return tuple(frame[part == i].reset_index(drop=True) for i in range(len(fractions)))


def random_movie_split(movies, seed):
    """Movies for the genre task: 10% train, 10% validation, 80% test, as in rel-movielens1m."""
    return random_split(movies, seed, fractions=(0.1, 0.1, 0.8))
