"""Shared fixtures: small MovieLens files written by the tests, and the real data in CI."""

import csv
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENRES = ("Action", "Comedy", "Drama", "Children's", "Sci-Fi", "Romance")


def shared_dir():
    return os.environ.get("DEEPMIX_SHARED_DIR", os.path.join(os.path.dirname(REPO), "shared"))


def require_shared(*parts):
    """A path under ../shared (or $DEEPMIX_SHARED_DIR): skips outside CI when absent, fails in CI."""
    path = os.path.join(shared_dir(), *parts)
    if not os.path.exists(path):
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing, and tests may not skip in CI")
        pytest.skip(f"{path} not present (real-data test; CI provides it)")
    return path


def make_movielens(n_users=40, n_movies=30, seed=0):
    """A small synthetic MovieLens: users, movies and ratings as lists of tuples."""
    rng = np.random.default_rng(seed)
    users = [(u, "MF"[u % 2], int(rng.choice([1, 18, 25, 35, 45, 50, 56])), int(u % 21),
              f"{10000 + 37 * u:05d}" if u % 7 else f"{10000 + u:05d}-1234")
             for u in range(1, n_users + 1)]
    movies = []
    for m in range(1, n_movies + 1):
        genres = sorted(set(rng.choice(GENRES, size=int(rng.integers(1, 3)), replace=False)))
        movies.append((m, f"Movie {m}{', The' if m % 5 == 0 else ''}", 1950 + m,
                       "|".join(genres)))
    ratings = []
    for u in range(1, n_users + 1):
        seen = rng.choice(np.arange(1, n_movies + 1), size=int(rng.integers(10, 20)),
                          replace=False)
        for i, m in enumerate(seen):
            ts = 970000000 + 1000 * u + int(rng.integers(0, 500)) * 10 + i
            ratings.append((u, int(m), int(rng.integers(1, 6)), ts))
    return users, movies, ratings


def write_ml1m(root, users, movies, ratings, undated=()):
    """Writes `root/ml-1m/*.dat`; ratings whose index is in `undated` get an empty timestamp."""
    d = os.path.join(root, "ml-1m")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "users.dat"), "w", encoding="latin-1") as f:
        f.writelines("::".join(map(str, u)) + "\n" for u in users)
    with open(os.path.join(d, "movies.dat"), "w", encoding="latin-1") as f:
        f.writelines(f"{m}::{title} ({year})::{genres}\n" for m, title, year, genres in movies)
    with open(os.path.join(d, "ratings.dat"), "w", encoding="ascii") as f:
        for i, (u, m, r, ts) in enumerate(ratings):
            f.write(f"{u}::{m}::{r}::{'' if i in undated else ts}\n")
    return d


MOVIE_HEADER = ["MovielensID", "Title", "Year", "Genre", "Director", "Cast", "Runtime",
                "Languages", "Certificate", "Plot", "Url"]


def movie_rows(movies):
    return [[m, title, year, genres, f"Director {m % 4}", "Actor A,Actor B", "90 minutes",
             "English", ["G", "PG", "R", ""][m % 4], f"A plot about {title}, with commas.",
             f"https://movielens.org/movies/{m}"] for m, title, year, genres in movies]


def _write_csv(path, header, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def write_rel(root, users, movies, ratings, rating_split, movie_split):
    """Writes `root/rel-movielens1m/` in the rLLM layout.

    Args:
        rating_split: dict split name -> list of rating tuples.
        movie_split: dict split name -> list of movie tuples.
    """
    d = os.path.join(root, "rel-movielens1m")
    user_header = ["UserID", "Gender", "Age", "Occupation", "Zip-code"]
    for task in ("regression", "classification"):
        _write_csv(os.path.join(d, task, "users.csv"), user_header, users)
    _write_csv(os.path.join(d, "regression", "movies.csv"), MOVIE_HEADER, movie_rows(movies))
    for name, rows in rating_split.items():
        _write_csv(os.path.join(d, "regression", "ratings", f"{name}.csv"),
                   ["UserID", "MovieID", "Rating", "Timestamp"], rows)
    for name, rows in movie_split.items():
        _write_csv(os.path.join(d, "classification", "movies", f"{name}.csv"), MOVIE_HEADER,
                   movie_rows(rows))
    return d


def simple_splits(movies, ratings):
    """Per-user last rating -> test, the one before -> validation; movies 1/3 each."""
    by_user = {}
    for r in ratings:
        by_user.setdefault(r[0], []).append(r)
    split = {"train": [], "validation": [], "test": []}
    for rows in by_user.values():
        rows = sorted(rows, key=lambda r: r[3])
        split["train"] += rows[:-2]
        split["validation"].append(rows[-2])
        split["test"].append(rows[-1])
    k = len(movies) // 3
    movie_split = {"train": movies[:k], "validation": movies[k:2 * k], "test": movies[2 * k:]}
    return split, movie_split


@pytest.fixture
def small_data(tmp_path):
    """A data root with both ml-1m/ and rel-movielens1m/ of the same small synthetic data."""
    users, movies, ratings = make_movielens()
    root = tmp_path / "data"
    write_ml1m(root, users, movies, ratings, undated={0, 1, 2})
    rating_split, movie_split = simple_splits(movies, ratings)
    write_rel(root, users, movies, ratings, rating_split, movie_split)
    return {"root": str(root), "users": users, "movies": movies, "ratings": ratings,
            "rating_split": rating_split, "movie_split": movie_split}


def assert_reloads_equal(model, features, path):
    """Saves `model` to `path`, loads it back, and checks it predicts what it did on
    `features`; returns the loaded model."""
    import keras

    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(features)), np.asarray(model(features)),
                               atol=1e-6)
    return loaded
