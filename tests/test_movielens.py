"""Reading the raw ML-1M and rel-movielens1m files through their dataset specs, and the
errors of malformed input: each names the file, the line and the field, and a build that
fails on it leaves nothing behind."""

import os

import numpy as np
import pandas as pd
import pytest

from conftest import make_movielens, write_ml1m
from deepmix_tf.data import readers, spec, splits, tfrecords
from deepmix_tf.data.errors import DataFormatError

ML1M_SPECS = ("ml-1m-rating-random", "ml-1m-rating-chronological", "ml-1m-genre")


def _ml1m(small_data):
    return os.path.join(small_data["root"], "ml-1m")


def _read_ml1m(directory, name="ml-1m-rating-random"):
    frames = readers.read_tables(spec.load_spec(name), directory)
    return frames["users"], frames["movies"], frames["ratings"]


def _read_rel(small_data, name="movielens1m-rating"):
    return readers.read_tables(spec.load_spec(name),
                               os.path.join(small_data["root"], "rel-movielens1m"))


def test_ml1m_parses_every_field(small_data):
    users, movies, ratings = _read_ml1m(_ml1m(small_data))
    assert len(users) == len(small_data["users"])
    assert len(movies) == len(small_data["movies"])
    assert len(ratings) == len(small_data["ratings"])
    first = small_data["users"][0]
    assert users.iloc[0][["user_id", "gender", "age", "occupation", "zip_code"]].tolist() == list(
        first)
    m = small_data["movies"][4]  # "Movie 5, The (1955)": comma in title, year from the title
    assert movies.iloc[4][["movie_id", "title", "year", "genres"]].tolist() == list(m)
    expected = np.array([r[:3] for r in small_data["ratings"]])
    np.testing.assert_array_equal(ratings[["user_id", "movie_id", "rating"]].to_numpy(), expected)
    # Every row says where it came from (for errors found after reading).
    path = os.path.join(_ml1m(small_data), "ratings.dat")
    assert (ratings[readers.FILE] == path).all()
    assert ratings[readers.LINE].tolist() == list(range(1, len(ratings) + 1))


@pytest.mark.parametrize("name", ML1M_SPECS)
def test_every_raw_ml1m_spec_reads_the_same_tables(small_data, name):
    users, movies, ratings = _read_ml1m(_ml1m(small_data), name)
    assert (len(users), len(movies), len(ratings)) == (
        len(small_data["users"]), len(small_data["movies"]), len(small_data["ratings"]))


def test_empty_timestamp_is_the_column_s_missing_value(small_data):
    _, _, ratings = _read_ml1m(_ml1m(small_data))
    # Undated ratings (the first three) get the column's missing value, 0.
    assert ratings["timestamp"].tolist()[:4] == [0, 0, 0, small_data["ratings"][3][3]]
    assert ratings["timestamp"].dtype == np.int64


def test_latin1_titles(tmp_path):
    users, movies, ratings = make_movielens()
    movies[0] = (1, "Am\u00e9lie", 2001, "Comedy")
    d = write_ml1m(tmp_path, users, movies, ratings)
    table = spec.load_spec("ml-1m-rating-random").tables["movies"]
    assert readers.read_table(table, d).title[0] == "Am\u00e9lie"


def test_title_without_a_year_has_year_zero(tmp_path):
    users, movies, ratings = make_movielens()
    d = write_ml1m(tmp_path, users, movies, ratings)
    path = os.path.join(d, "movies.dat")
    _replace_line(path, 3, "3::Untitled::Drama")
    _, movies_frame, _ = _read_ml1m(d)
    assert movies_frame.iloc[2][["title", "year"]].tolist() == ["Untitled", 0]


# --------------------------------------------------------------------- malformed ML-1M input


def _lines(path):
    with open(path, encoding="latin-1") as f:
        return f.read().splitlines()


def _write_lines(path, lines):
    with open(path, "w", encoding="latin-1") as f:
        f.writelines(line + "\n" for line in lines)


def _replace_line(path, line_number, new_line):
    lines = _lines(path)
    lines[line_number - 1] = new_line
    _write_lines(path, lines)


def _set_field(path, line_number, index, value):
    """Changes one '::'-separated field of a line, keeping the others."""
    lines = _lines(path)
    fields = lines[line_number - 1].split("::")
    fields[index] = value
    lines[line_number - 1] = "::".join(fields)
    _write_lines(path, lines)


def _rejoin(path, line_number, separator):
    lines = _lines(path)
    lines[line_number - 1] = separator.join(lines[line_number - 1].split("::"))
    _write_lines(path, lines)


def _empty(path):
    open(path, "w").close()


def _blank_lines(path):
    with open(path, "w") as f:
        f.write("\n\n   \n\n")


def _duplicate(path, line_number, of):
    """Line `line_number` becomes another rating of the same (user, movie) as line `of`."""
    lines = _lines(path)
    u, m, r, ts = lines[of - 1].split("::")
    lines[line_number - 1] = f"{u}::{m}::{int(r) % 5 + 1}::{ts or 978300760}"
    _write_lines(path, lines)


# (spec, file, corruption, line, field, words of the message)
MALFORMED_ML1M = [
    ("ml-1m-rating-random", "ratings.dat", _empty, None, None, "no rows"),
    ("ml-1m-rating-chronological", "ratings.dat", _blank_lines, None, None, "no rows"),
    ("ml-1m-rating-random", "users.dat", _empty, None, None, "no rows"),
    ("ml-1m-genre", "users.dat", _empty, None, None, "no rows"),
    ("ml-1m-rating-random", "movies.dat", _blank_lines, None, None, "no rows"),
    ("ml-1m-rating-random", "ratings.dat", lambda p: _duplicate(p, 10, of=4), 10,
     "UserID, MovieID", "(first at {path}, line 4)"),
    ("ml-1m-rating-chronological", "ratings.dat", lambda p: _duplicate(p, 5, of=4), 5,
     "UserID, MovieID", "duplicate UserID="),
    ("ml-1m-rating-random", "ratings.dat", lambda p: _rejoin(p, 6, "\t"), 6, None,
     "expected 4 '::'-separated fields"),
    ("ml-1m-rating-random", "ratings.dat", lambda p: _rejoin(p, 7, ","), 7, None,
     "expected 4 '::'-separated fields"),
    ("ml-1m-rating-random", "ratings.dat", lambda p: _replace_line(p, 5, "1::2::"), 5, None,
     "got 3"),
    ("ml-1m-rating-random", "ratings.dat", lambda p: _replace_line(p, 5, "1::2::3"), 5, None,
     "got 3"),
    ("ml-1m-rating-random", "ratings.dat", lambda p: _set_field(p, 11, 0, "999"), 11, "UserID",
     "is not a user_id of table 'users'"),
    ("ml-1m-rating-chronological", "ratings.dat", lambda p: _set_field(p, 12, 1, "999"), 12,
     "MovieID", "is not a movie_id of table 'movies'"),
    ("ml-1m-genre", "ratings.dat", lambda p: _set_field(p, 12, 1, "999"), 12, "MovieID",
     "is not a movie_id"),
    ("ml-1m-rating-random", "ratings.dat", lambda p: _set_field(p, 8, 2, "6"), 8, "Rating",
     "outside [1, 5]"),
    ("ml-1m-rating-random", "ratings.dat", lambda p: _set_field(p, 9, 2, "0"), 9, "Rating",
     "outside [1, 5]"),
    ("ml-1m-rating-random", "users.dat", lambda p: _set_field(p, 3, 2, "17"), 3, "Age",
     "expected one of [1, 18, 25, 35, 45, 50, 56]"),
    ("ml-1m-rating-random", "users.dat", lambda p: _set_field(p, 4, 3, "21"), 4, "Occupation",
     "outside [0, 20]"),
    ("ml-1m-rating-chronological", "users.dat", lambda p: _set_field(p, 5, 1, "X"), 5,
     "Gender", "unknown value 'X'"),
    ("ml-1m-rating-random", "users.dat", lambda p: _replace_line(p, 4, "3::M::25::4::12345"), 4,
     "UserID", "(first at {path}, line 3)"),
    ("ml-1m-rating-random", "users.dat", lambda p: _replace_line(p, 6, "6::M::25"), 6, None,
     "expected 5 '::'-separated fields"),
    ("ml-1m-rating-random", "ratings.dat", lambda p: _set_field(p, 13, 0, "abc"), 13,
     "UserID", "expected an integer, got 'abc'"),
    ("ml-1m-rating-random", "ratings.dat", lambda p: _set_field(p, 14, 2, "4.5"), 14, "Rating",
     "expected an integer, got '4.5'"),
    ("ml-1m-rating-random", "ratings.dat", lambda p: _set_field(p, 7, 2, "x"), 7, "Rating",
     "expected an integer"),
    ("ml-1m-rating-chronological", "ratings.dat", lambda p: _set_field(p, 15, 3, "yesterday"),
     15, "Timestamp", "expected an integer, got 'yesterday'"),
    ("ml-1m-rating-random", "ratings.dat", lambda p: _set_field(p, 9, 3, "12:30"), 9,
     "Timestamp", "expected an integer"),
    ("ml-1m-rating-random", "ratings.dat", lambda p: _set_field(p, 16, 2, "\u00e9"), 16, None,
     "not valid ascii text"),
    ("ml-1m-rating-random", "movies.dat", lambda p: _set_field(p, 2, 2, "Comedy|Opera"), 2,
     "Genres", "unknown value 'Opera'"),
    ("ml-1m-genre", "movies.dat", lambda p: _set_field(p, 2, 2, "Comedy|Opera"), 2, "Genres",
     "unknown value 'Opera'"),
    ("ml-1m-rating-random", "movies.dat", lambda p: _set_field(p, 6, 0, "six"), 6, "MovieID",
     "expected an integer, got 'six'"),
]


@pytest.mark.parametrize("name,file,corrupt,line,field,words", MALFORMED_ML1M,
                         ids=[f"{c[0]}-{c[1]}-{c[3]}-{c[5][:24]}" for c in MALFORMED_ML1M])
def test_malformed_ml1m_fails_the_build_naming_file_line_and_field(
        small_data, tmp_path, name, file, corrupt, line, field, words):
    path = os.path.join(_ml1m(small_data), file)
    corrupt(path)
    out = tmp_path / "out"
    with pytest.raises(DataFormatError) as error:
        tfrecords.build_tfrecords(name, small_data["root"], str(out), num_shards=2,
                                  log=lambda _: None)
    assert error.value.path == path
    assert error.value.line == line
    assert error.value.field == field
    message = str(error.value)
    assert message.startswith(path)
    if line is not None:
        assert f"{path}, line {line}" in message
        assert f"line {line}" in message
    if field is not None:
        assert f"field {field!r}" in message
    assert words.format(path=path) in message
    # Nothing at the build folder, and no staging folder beside it.
    assert not (out / name).exists()
    assert not out.exists() or os.listdir(out) == []


@pytest.mark.parametrize("file,corrupt,expected", [
    ("ratings.dat", lambda p: _set_field(p, 11, 0, "999"),
     "field 'UserID': 999 is not a user_id of table 'users'"),
    ("users.dat", lambda p: _set_field(p, 3, 2, "17"), "field 'Age': unknown value 17;"),
    ("users.dat", lambda p: _replace_line(p, 4, "3::M::25::4::12345"),
     "field 'UserID': duplicate UserID=3 (first at"),
    ("ratings.dat", lambda p: _duplicate(p, 10, of=4), "duplicate UserID=1, MovieID="),
])
def test_error_messages_show_values_as_written(small_data, file, corrupt, expected):
    path = os.path.join(_ml1m(small_data), file)
    corrupt(path)
    with pytest.raises(DataFormatError) as error:
        _read_ml1m(_ml1m(small_data))
    assert "np." not in str(error.value)
    assert expected in str(error.value)


def test_malformed_ml1m_leaves_an_earlier_build_as_it_was(small_data, tmp_path):
    name = "ml-1m-rating-chronological"
    out = tmp_path / "out"
    build = tfrecords.build_tfrecords(name, small_data["root"], str(out), num_shards=2,
                                      log=lambda _: None)
    before = {f: os.path.getmtime(os.path.join(build, f)) for f in os.listdir(build)}
    meta = tfrecords.read_metadata(build)
    path = os.path.join(_ml1m(small_data), "ratings.dat")
    _set_field(path, 20, 2, "6")
    with pytest.raises(DataFormatError, match=r"ratings\.dat, line 20, field 'Rating'"):
        tfrecords.build_tfrecords(name, small_data["root"], str(out), num_shards=2,
                                  log=lambda _: None)
    assert os.listdir(out) == [name]
    assert {f: os.path.getmtime(os.path.join(build, f)) for f in os.listdir(build)} == before
    assert tfrecords.read_metadata(build) == meta


def test_missing_file_names_it(small_data):
    d = _ml1m(small_data)
    os.remove(os.path.join(d, "users.dat"))
    with pytest.raises(FileNotFoundError, match="users.dat"):
        _read_ml1m(d)


# --------------------------------------------------------------------- rel-movielens1m


def test_rel_movielens1m_rating_task(small_data):
    frames = _read_rel(small_data)
    parts = splits.split_examples(frames["ratings"], spec.load_spec("movielens1m-rating").split)
    for name in splits.SPLITS:
        expected = np.array(small_data["rating_split"][name])
        got = parts[name][["user_id", "movie_id", "rating", "timestamp"]]
        np.testing.assert_array_equal(got.to_numpy(dtype=np.int64), expected)
    toy = frames["movies"].iloc[0]
    assert toy["director"] == "Director 1" and toy["certificate"] == "PG"
    assert toy["plot"] == "A plot about Movie 1, with commas."
    # An empty certificate is the column's missing value.
    assert frames["movies"].iloc[2]["certificate"] == ""


def test_rel_movielens1m_genre_task_uses_whole_rating_graph(small_data):
    s = spec.load_spec("movielens1m-genre")
    frames = _read_rel(small_data, "movielens1m-genre")
    assert len(frames["ratings"]) == len(small_data["ratings"])
    assert s.dense_tables[0].derived["interactions"] == "ratings"
    assert s.dense_tables[0].derived["splits"] == "all"
    parts = splits.split_examples(readers.join_examples(s, frames), s.split)
    for name in splits.SPLITS:
        assert parts[name]["movie_id"].tolist() == [
            m[0] for m in small_data["movie_split"][name]]


def _rel_path(small_data, *parts):
    return os.path.join(small_data["root"], "rel-movielens1m", *parts)


def _build_rel(small_data, tmp_path, name="movielens1m-rating"):
    return tfrecords.build_tfrecords(name, small_data["root"], str(tmp_path / "out"),
                                     num_shards=2, svd_dim=4, log=lambda _: None)


@pytest.mark.parametrize("name", ["movielens1m-rating", "movielens1m-genre"])
def test_csv_duplicate_pair_across_split_files(small_data, tmp_path, name):
    first = small_data["rating_split"]["train"][0]
    test_csv = _rel_path(small_data, "regression", "ratings", "test.csv")
    train_csv = _rel_path(small_data, "regression", "ratings", "train.csv")
    with open(test_csv, "a") as f:
        f.write(f"{first[0]},{first[1]},{first[2] % 5 + 1},{first[3] + 1}\n")
    with pytest.raises(DataFormatError) as error:
        _build_rel(small_data, tmp_path, name)
    line = len(small_data["rating_split"]["test"]) + 2  # header, rows, the appended row
    assert (error.value.path, error.value.line) == (test_csv, line)
    assert error.value.field == "UserID, MovieID"
    assert f"test.csv, line {line}" in str(error.value)
    assert "duplicate UserID=" in str(error.value)
    assert f"(first at {train_csv}, line 2)" in str(error.value)
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_csv_duplicate_movie_across_classification_splits(small_data, tmp_path):
    path = _rel_path(small_data, "classification", "movies", "test.csv")
    with open(_rel_path(small_data, "classification", "movies", "train.csv")) as f:
        row = f.read().splitlines()[1]
    with open(path, "a") as f:
        f.write(row + "\n")
    line = len(small_data["movie_split"]["test"]) + 2
    with pytest.raises(DataFormatError,
                       match=rf"test\.csv, line {line}, field 'MovielensID': duplicate"):
        _build_rel(small_data, tmp_path, "movielens1m-genre")


def test_csv_bad_value_names_line(small_data, tmp_path):
    path = _rel_path(small_data, "regression", "ratings", "test.csv")
    with open(path) as f:
        lines = f.readlines()
    lines[3] = "1,2,five,978300760\n"
    with open(path, "w") as f:
        f.writelines(lines)
    with pytest.raises(DataFormatError, match=r"test\.csv, line 4, field 'Rating'") as error:
        _read_rel(small_data)
    assert "expected an integer, got 'five'" in str(error.value)
    with pytest.raises(DataFormatError, match=r"test\.csv, line 4, field 'Rating'"):
        _build_rel(small_data, tmp_path)
    assert not (tmp_path / "out" / "movielens1m-rating").exists()


def test_csv_unknown_movie_names_line(small_data, tmp_path):
    path = _rel_path(small_data, "regression", "ratings", "validation.csv")
    with open(path, "a") as f:
        f.write("1,999,3,978300760\n")
    line = len(small_data["rating_split"]["validation"]) + 2
    with pytest.raises(DataFormatError,
                       match=rf"validation\.csv, line {line}, field 'MovieID': .*is not a "
                             r"movie_id of table 'catalog'"):
        _build_rel(small_data, tmp_path, "movielens1m-genre")


def test_csv_wrong_field_count_names_line(small_data, tmp_path):
    path = _rel_path(small_data, "regression", "users.csv")
    with open(path, "a") as f:
        f.write("99,M,25\n")
    with pytest.raises(DataFormatError, match=r"users\.csv, line 42: expected 5"):
        _read_rel(small_data)
    with pytest.raises(DataFormatError, match=r"users\.csv, line 42: expected 5"):
        _build_rel(small_data, tmp_path)


def test_csv_missing_header_column_names_it(small_data):
    path = _rel_path(small_data, "regression", "ratings", "train.csv")
    frame = pd.read_csv(path).rename(columns={"Rating": "Stars"})
    frame.to_csv(path, index=False)
    with pytest.raises(DataFormatError, match=r"train\.csv, line 1, field 'Rating': header"):
        _read_rel(small_data)
