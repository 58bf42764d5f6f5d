"""Readers for the MovieLens-1M files: the raw GroupLens `ml-1m/` directory and the rLLM
`rel-movielens1m/` CSV layout.

Every reader returns pandas DataFrames with the same column names and dtypes, whatever the
source:

- users: `user_id` int64, `gender` str, `age` int64, `occupation` int64, `zip_code` str.
- movies: `movie_id` int64, `title` str, `year` int64 (0 where the source has none),
  `genres` str (`|`-joined), and for rel-movielens1m also the text columns `director`, `cast`,
  `runtime`, `languages`, `certificate`, `plot` (str, "" where missing).
- ratings: `user_id` int64, `movie_id` int64, `rating` int64 (1..5), `timestamp` Int64
  (pandas nullable: the shared copy of ML-1M lacks some timestamps).

Malformed input raises `DataFormatError` naming the file, the line and the field.
"""

import csv
import dataclasses
import os
import re

import numpy as np
import pandas as pd

from deepmix_tf.data.errors import DataFormatError

# The 18 genres of ML-1M, in the order of its README: the order of every multi-hot vector.
GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)
TEXT_COLUMNS = ("director", "cast", "runtime", "languages", "certificate", "plot")
SPLITS = ("train", "validation", "test")

_YEAR_IN_TITLE = re.compile(r"^(.*)\s+\((\d{4})\)\s*$")


@dataclasses.dataclass
class RatingSplits:
    """Ratings split for the rating task, plus the user and movie tables they refer to."""

    users: pd.DataFrame
    movies: pd.DataFrame
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame

    def split(self, name):
        return getattr(self, name)


@dataclasses.dataclass
class GenreSplits:
    """Movies split for the genre task, plus the whole rating graph (all ratings)."""

    users: pd.DataFrame
    ratings: pd.DataFrame
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame

    def split(self, name):
        return getattr(self, name)


def _to_int(values, lines, path, field, allow_empty=False):
    """Converts a list of strings to int64, naming the first bad line on failure.

    Returns an int64 array, and with `allow_empty` a boolean mask of the present values.
    """
    array = np.asarray(values, dtype=object)
    present = array != ""
    try:
        out = np.zeros(len(array), dtype=np.int64)
        out[present] = array[present].astype(str).astype(np.int64)
        if not allow_empty and not present.all():
            raise ValueError
    except (ValueError, OverflowError):
        for i, value in enumerate(values):
            if value == "" and allow_empty:
                continue
            try:
                int(value)
            except ValueError:
                raise DataFormatError(
                    path, lines[i], field, f"expected an integer, got {value!r}") from None
        raise
    return (out, present) if allow_empty else out


def _check_range(values, lines, path, field, low, high):
    bad = np.flatnonzero((values < low) | (values > high))
    if len(bad):
        i = bad[0]
        raise DataFormatError(
            path, lines[i], field, f"value {values[i]} is outside [{low}, {high}]")


def _check_genres(genres, lines, path, field="Genre"):
    known = set(GENRES)
    for i, value in enumerate(genres):
        parts = value.split("|") if value else []
        if not parts:
            raise DataFormatError(path, lines[i], field, "no genre given")
        for genre in parts:
            if genre not in known:
                raise DataFormatError(
                    path, lines[i], field,
                    f"unknown genre {genre!r}; expected '|'-separated names from {GENRES}")


def _check_known(ids, known_ids, lines, path, field, what):
    unknown = np.flatnonzero(~np.isin(ids, known_ids))
    if len(unknown):
        i = unknown[0]
        raise DataFormatError(path, lines[i], field, f"{what} {ids[i]} is not in the {what} table")


def _check_unique(ids, lines, path, field):
    _, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if (counts > 1).any():
        value = ids[first[np.argmax(counts > 1)]]
        dup = np.flatnonzero(ids == value)[1]
        raise DataFormatError(path, lines[dup], field, f"duplicate id {value}")


# ----------------------------------------------------------------------------- raw ml-1m


def _read_dat(path, names, encoding):
    """Reads a `::`-separated file into columns of strings, with their 1-based line numbers."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DataFormatError(path, line, None, f"not valid {encoding} text") from None
    columns = [[] for _ in names]
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != len(names):
            raise DataFormatError(
                path, number, None,
                f"expected {len(names)} '::'-separated fields ({'::'.join(names)}), "
                f"got {len(parts)}: {line[:80]!r}")
        for column, part in zip(columns, parts):
            column.append(part.strip())
        lines.append(number)
    return columns, lines


def read_users_dat(path):
    """Reads ml-1m `users.dat` (UserID::Gender::Age::Occupation::Zip-code)."""
    names = ("UserID", "Gender", "Age", "Occupation", "Zip-code")
    (uid, gender, age, occupation, zip_code), lines = _read_dat(path, names, "latin-1")
    return _users_frame(uid, gender, age, occupation, zip_code, lines, path)


def _users_frame(uid, gender, age, occupation, zip_code, lines, path):
    user_id = _to_int(uid, lines, path, "UserID")
    _check_unique(user_id, lines, path, "UserID")
    for i, g in enumerate(gender):
        if g not in ("M", "F"):
            raise DataFormatError(path, lines[i], "Gender", f"expected 'M' or 'F', got {g!r}")
    for i, z in enumerate(zip_code):
        if not z:
            raise DataFormatError(path, lines[i], "Zip-code", "empty zip code")
    return pd.DataFrame({
        "user_id": user_id,
        "gender": gender,
        "age": _to_int(age, lines, path, "Age"),
        "occupation": _to_int(occupation, lines, path, "Occupation"),
        "zip_code": zip_code,
    })


def read_movies_dat(path):
    """Reads ml-1m `movies.dat` (MovieID::Title::Genres, latin-1); the year comes from the title."""
    (mid, title, genres), lines = _read_dat(path, ("MovieID", "Title", "Genres"), "latin-1")
    movie_id = _to_int(mid, lines, path, "MovieID")
    _check_unique(movie_id, lines, path, "MovieID")
    _check_genres(genres, lines, path, "Genres")
    titles, years = [], []
    for t in title:
        match = _YEAR_IN_TITLE.match(t)
        titles.append(match.group(1) if match else t)
        years.append(int(match.group(2)) if match else 0)
    return pd.DataFrame({
        "movie_id": movie_id, "title": titles, "year": np.asarray(years, dtype=np.int64),
        "genres": genres,
    })


def read_ratings_dat(path):
    """Reads ml-1m `ratings.dat` (UserID::MovieID::Rating::Timestamp); a timestamp may be empty."""
    names = ("UserID", "MovieID", "Rating", "Timestamp")
    (uid, mid, rating, ts), lines = _read_dat(path, names, "ascii")
    return _ratings_frame(uid, mid, rating, ts, lines, path)[0]


def _ratings_frame(uid, mid, rating, ts, lines, path):
    ratings = _to_int(rating, lines, path, "Rating")
    _check_range(ratings, lines, path, "Rating", 1, 5)
    timestamp, present = _to_int(ts, lines, path, "Timestamp", allow_empty=True)
    frame = pd.DataFrame({
        "user_id": _to_int(uid, lines, path, "UserID"),
        "movie_id": _to_int(mid, lines, path, "MovieID"),
        "rating": ratings,
        "timestamp": pd.arrays.IntegerArray(timestamp, ~present),
    })
    return frame, lines


def _check_references(ratings, lines, path, users, movies):
    """Every rating must name a known user and movie."""
    _check_known(ratings["user_id"].to_numpy(), users["user_id"].to_numpy(), lines, path,
                 "UserID", "user")
    _check_known(ratings["movie_id"].to_numpy(), movies["movie_id"].to_numpy(), lines, path,
                 "MovieID", "movie")


def load_ml1m(directory):
    """Loads the raw GroupLens ML-1M directory (`users.dat`, `movies.dat`, `ratings.dat`).

    Returns:
        (users, movies, ratings) DataFrames in the columns described in this module's docstring.
    """
    users = read_users_dat(os.path.join(directory, "users.dat"))
    movies = read_movies_dat(os.path.join(directory, "movies.dat"))
    path = os.path.join(directory, "ratings.dat")
    names = ("UserID", "MovieID", "Rating", "Timestamp")
    (uid, mid, rating, ts), lines = _read_dat(path, names, "ascii")
    ratings, lines = _ratings_frame(uid, mid, rating, ts, lines, path)
    _check_references(ratings, lines, path, users, movies)
    return users, movies, ratings


# ------------------------------------------------------------------------- rel-movielens1m


def _read_csv(path, expected):
    """Reads a CSV file into columns of strings (by header name), with 1-based line numbers."""
    try:
        f = open(path, encoding="utf-8", newline="")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise DataFormatError(path, 1, None, "empty file, expected a header line") from None
        except UnicodeDecodeError:
            raise DataFormatError(path, 1, None, "not valid UTF-8 text") from None
        missing = [name for name in expected if name not in header]
        if missing:
            raise DataFormatError(path, 1, missing[0],
                                  f"header lacks column(s) {missing}; it has {header}")
        index = [header.index(name) for name in expected]
        columns = [[] for _ in expected]
        lines = []
        line = reader.line_num
        try:
            for row in reader:
                if not row:
                    line = reader.line_num
                    continue
                if len(row) != len(header):
                    raise DataFormatError(
                        path, line + 1, None,
                        f"expected {len(header)} comma-separated fields, got {len(row)}")
                for column, i in zip(columns, index):
                    column.append(row[i].strip())
                lines.append(line + 1)  # the line where this record starts
                line = reader.line_num
        except UnicodeDecodeError:
            raise DataFormatError(path, line + 1, None, "not valid UTF-8 text") from None
        except csv.Error as e:
            raise DataFormatError(path, reader.line_num, None, f"bad CSV: {e}") from None
    return dict(zip(expected, columns)), lines


def read_users_csv(path):
    names = ("UserID", "Gender", "Age", "Occupation", "Zip-code")
    columns, lines = _read_csv(path, names)
    return _users_frame(*(columns[n] for n in names), lines, path)


_MOVIE_CSV_COLUMNS = ("MovielensID", "Title", "Year", "Genre", "Director", "Cast", "Runtime",
                      "Languages", "Certificate", "Plot")


def read_movies_csv(path):
    """Reads a rel-movielens1m movie table (`movies.csv` or a classification split)."""
    columns, lines = _read_csv(path, _MOVIE_CSV_COLUMNS)
    movie_id = _to_int(columns["MovielensID"], lines, path, "MovielensID")
    _check_unique(movie_id, lines, path, "MovielensID")
    year, _ = _to_int(columns["Year"], lines, path, "Year", allow_empty=True)
    _check_genres(columns["Genre"], lines, path)
    frame = pd.DataFrame({
        "movie_id": movie_id, "title": columns["Title"], "year": year,
        "genres": columns["Genre"],
    })
    for name in TEXT_COLUMNS:
        frame[name] = columns[name.capitalize()]
    return frame


def _read_ratings_csv(path):
    names = ("UserID", "MovieID", "Rating", "Timestamp")
    columns, lines = _read_csv(path, names)
    return _ratings_frame(*(columns[n] for n in names), lines, path)


def read_ratings_csv(path):
    return _read_ratings_csv(path)[0]


def load_rel_movielens1m_rating(directory):
    """Loads the rel-movielens1m regression task: ratings train/validation/test and the tables.

    Args:
        directory: the `rel-movielens1m` folder (holding `regression/` and `classification/`).
    """
    root = os.path.join(directory, "regression")
    users = read_users_csv(os.path.join(root, "users.csv"))
    movies = read_movies_csv(os.path.join(root, "movies.csv"))
    splits = {}
    for name in SPLITS:
        path = os.path.join(root, "ratings", f"{name}.csv")
        ratings, lines = _read_ratings_csv(path)
        _check_references(ratings, lines, path, users, movies)
        splits[name] = ratings
    return RatingSplits(users=users, movies=movies, **splits)


def load_rel_movielens1m_genre(directory):
    """Loads the rel-movielens1m classification task: movies train/validation/test.

    The rating graph of this task is all of ML-1M; rel-movielens1m's regression ratings are
    exactly that (train + validation + test), so they are used and no `ml-1m/` is needed.
    """
    root = os.path.join(directory, "classification")
    users = read_users_csv(os.path.join(root, "users.csv"))
    splits = {name: read_movies_csv(os.path.join(root, "movies", f"{name}.csv"))
              for name in SPLITS}
    rating = load_rel_movielens1m_rating(directory)
    ratings = pd.concat([rating.train, rating.validation, rating.test], ignore_index=True)
    return GenreSplits(users=users, ratings=ratings, **splits)
