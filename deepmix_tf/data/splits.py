"""Deterministic train/validation/test splits of an examples table (a spec's `split`).

- "files": the spec gives one file per split (rel-movielens1m's own splits).
- "random": a seeded random permutation, cut by the fractions.
- "chronological": per key (a user), ordered by a time column, the oldest part trains,
  the next validates, the latest tests (the rel-movielens1m regression protocol).
- "ordered": contiguous parts in file order (a log that is already in time order, such as
  Criteo's: DLRM trains on the first days and tests on the last).
"""

import numpy as np

from deepmix_tf.data.readers import SPLIT

SPLITS = ("train", "validation", "test")


def _counts(n, fractions):
    """Splits n items into len(fractions) counts; the last part takes the rounding rest."""
    counts = [int(round(n * f)) for f in fractions[:-1]]
    return counts + [n - sum(counts)]


def _check(fractions):
    if len(fractions) != 3 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"expected 3 fractions summing to 1, got {fractions}")


def chronological_parts(key, time, fractions=(0.8, 0.1, 0.1)):
    """Part index (0 train, 1 validation, 2 test) of each row, per key by time.

    Within each key, rows are ordered by `time` (ties keep file order); each key's validation
    and test parts are `round(n * fraction)` of its n rows, so keys with few rows still get
    some. Rows with an empty time carry the column's missing value (0) and so count as the
    oldest (in the shared copy of ML-1M none of them is a user's latest rating).
    """
    _check(fractions)
    key, time = np.asarray(key), np.asarray(time, np.int64)
    order = np.lexsort((np.arange(len(key)), time, key))
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    sizes = np.diff(np.r_[starts, len(key)])
    rank = np.arange(len(key)) - np.repeat(starts, sizes)
    n_val = np.rint(sizes * fractions[1]).astype(np.int64)
    n_test = np.rint(sizes * fractions[2]).astype(np.int64)
    n_train = sizes - n_val - n_test
    part_sorted = np.where(rank < np.repeat(n_train, sizes), 0,
                           np.where(rank < np.repeat(n_train + n_val, sizes), 1, 2))
    part = np.empty_like(part_sorted)
    part[order] = part_sorted
    return part


def random_parts(n, seed, fractions=(0.8, 0.1, 0.1)):
    """Part index of each of n rows under a seeded random permutation."""
    _check(fractions)
    permutation = np.random.default_rng(seed).permutation(n)
    part = np.empty(n, dtype=np.int64)
    start = 0
    for i, count in enumerate(_counts(n, fractions)):
        part[permutation[start:start + count]] = i
        start += count
    return part


def ordered_parts(n, fractions=(0.8, 0.1, 0.1)):
    """Part index of each of n rows: contiguous parts in row order."""
    _check(fractions)
    return np.repeat(np.arange(3), _counts(n, fractions))


def split_examples(frame, split):
    """{split name: rows} of an examples frame under a spec's `split` entry, each part in
    the frame's row order."""
    kind, fractions = split["type"], split["fractions"]
    if kind == "files":
        part = frame[SPLIT].map({name: i for i, name in enumerate(SPLITS)}).to_numpy()
    elif kind == "random":
        part = random_parts(len(frame), split["seed"], fractions)
    elif kind == "chronological":
        part = chronological_parts(frame[split["key"]].to_numpy(),
                                   frame[split["time"]].to_numpy(), fractions)
    elif kind == "ordered":
        part = ordered_parts(len(frame), fractions)
    else:
        raise ValueError(f"unknown split type {kind!r}")
    return {name: frame[part == i].reset_index(drop=True) for i, name in enumerate(SPLITS)}
