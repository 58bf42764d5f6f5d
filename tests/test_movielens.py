"""Parsing of the raw ML-1M and rel-movielens1m files, and their errors."""

import os

import numpy as np
import pytest

from conftest import make_movielens, write_ml1m
from deepmix_tf.data import movielens
from deepmix_tf.data.errors import DataFormatError


def test_ml1m_parses_every_field(small_data):
    users, movies, ratings = movielens.load_ml1m(os.path.join(small_data["root"], "ml-1m"))
    assert len(users) == len(small_data["users"])
    assert len(movies) == len(small_data["movies"])
    assert len(ratings) == len(small_data["ratings"])
    first = small_data["users"][0]
    assert users.iloc[0].tolist() == list(first)
    m = small_data["movies"][4]  # "Movie 5, The (1955)": comma in title, year from the title
    assert movies.iloc[4][["movie_id", "title", "year", "genres"]].tolist() == list(m)
    expected = np.array([r[:3] for r in small_data["ratings"]])
    np.testing.assert_array_equal(ratings[["user_id", "movie_id", "rating"]].to_numpy(), expected)


def test_empty_timestamp_is_missing_not_zero(small_data):
    _, _, ratings = movielens.load_ml1m(os.path.join(small_data["root"], "ml-1m"))
    assert ratings["timestamp"].isna().tolist()[:4] == [True, True, True, False]
    assert ratings["timestamp"].iloc[3] == small_data["ratings"][3][3]


def test_latin1_titles(tmp_path):
    users, movies, ratings = make_movielens()
    movies[0] = (1, "Am\u00e9lie", 2001, "Comedy")
    d = write_ml1m(tmp_path, users, movies, ratings)
    assert movielens.read_movies_dat(os.path.join(d, "movies.dat")).title[0] == "Am\u00e9lie"


def _corrupt(path, line_number, new_line):
    with open(path, encoding="latin-1") as f:
        lines = f.readlines()
    lines[line_number - 1] = new_line + "\n"
    with open(path, "w", encoding="latin-1") as f:
        f.writelines(lines)


@pytest.mark.parametrize("file,line,field,text", [
    ("ratings.dat", 7, "Rating", "1::2::x::978300760"),
    ("ratings.dat", 8, "Rating", "1::2::6::978300760"),
    ("ratings.dat", 9, "Timestamp", "1::2::3::12:30"),
    ("ratings.dat", 5, None, "1::2::3"),
    ("ratings.dat", 11, "UserID", "999::2::3::978300760"),
    ("ratings.dat", 12, "MovieID", "1::999::3::978300760"),
    ("users.dat", 3, "Gender", "3::X::25::4::12345"),
    ("users.dat", 4, "UserID", "3::M::25::4::12345"),
    ("movies.dat", 2, "Genres", "2::Movie (1999)::Comedy|Opera"),
    ("movies.dat", 6, "MovieID", "six::Movie (1999)::Comedy"),
])
def test_malformed_line_names_file_line_and_field(small_data, file, line, field, text):
    d = os.path.join(small_data["root"], "ml-1m")
    path = os.path.join(d, file)
    _corrupt(path, line, text)
    with pytest.raises(DataFormatError) as error:
        movielens.load_ml1m(d)
    assert error.value.path == path
    assert error.value.line == line
    assert error.value.field == field
    assert f"{path}, line {line}" in str(error.value)


def test_missing_file_names_it(small_data):
    d = os.path.join(small_data["root"], "ml-1m")
    os.remove(os.path.join(d, "users.dat"))
    with pytest.raises(FileNotFoundError, match="users.dat"):
        movielens.load_ml1m(d)


def test_rel_movielens1m_rating_task(small_data):
    splits = movielens.load_rel_movielens1m_rating(
        os.path.join(small_data["root"], "rel-movielens1m"))
    for name in movielens.SPLITS:
        expected = np.array(small_data["rating_split"][name])
        got = splits.split(name)[["user_id", "movie_id", "rating", "timestamp"]]
        np.testing.assert_array_equal(got.to_numpy(dtype=np.int64), expected)
    toy = splits.movies.iloc[0]
    assert toy["director"] == "Director 1" and toy["certificate"] == "PG"
    assert toy["plot"] == "A plot about Movie 1, with commas."


def test_rel_movielens1m_genre_task_uses_whole_rating_graph(small_data):
    splits = movielens.load_rel_movielens1m_genre(
        os.path.join(small_data["root"], "rel-movielens1m"))
    assert len(splits.ratings) == len(small_data["ratings"])
    for name in movielens.SPLITS:
        assert splits.split(name)["movie_id"].tolist() == [
            m[0] for m in small_data["movie_split"][name]]


def test_csv_bad_value_names_line(small_data):
    path = os.path.join(small_data["root"], "rel-movielens1m", "regression", "ratings",
                        "test.csv")
    with open(path) as f:
        lines = f.readlines()
    lines[3] = "1,2,five,978300760\n"
    with open(path, "w") as f:
        f.writelines(lines)
    with pytest.raises(DataFormatError, match=r"test\.csv, line 4, field 'Rating'"):
        movielens.load_rel_movielens1m_rating(os.path.join(small_data["root"], "rel-movielens1m"))


def test_csv_wrong_field_count_names_line(small_data):
    path = os.path.join(small_data["root"], "rel-movielens1m", "regression", "users.csv")
    with open(path, "a") as f:
        f.write("99,M,25\n")
    with pytest.raises(DataFormatError, match=r"users\.csv, line 42: expected 5"):
        movielens.load_rel_movielens1m_rating(os.path.join(small_data["root"], "rel-movielens1m"))
