"""TFRecords builds of dataset specs and the tf.data reader, on small files the tests write;
spec validation; custom specs (CSV, Parquet)."""

import copy
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from conftest import REPO, make_movielens, simple_splits, write_ml1m, write_rel
from deepmix_tf import tasks
from deepmix_tf.data import blocks, spec, splits, tfrecords
from deepmix_tf.data.errors import DataFormatError
from deepmix_tf.data.spec import SpecError

RATING, GENRE = "movielens1m-rating", "movielens1m-genre"
ML1M_SPECS = ("ml-1m-rating-random", "ml-1m-rating-chronological", "ml-1m-genre")


def _quiet(_):
    pass


def _build(small_data, tmp_path, name=RATING, **kwargs):
    kwargs = {"num_shards": 3, "svd_dim": 4, "log": _quiet, **kwargs}
    return tfrecords.build_tfrecords(name, small_data["root"], str(tmp_path / "out"), **kwargs)


def _feature(meta, name):
    return next(f for f in meta["features"] if f["name"] == name)


def _vocab(meta, name):
    return _feature(meta, name)["vocabulary"]


def _genre_names():
    """The genre names, as the spec files declare them (the only place they live)."""
    raw = spec.load_spec(RATING).tables["movies"].column("genres")
    return list(raw.values)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The small data of conftest's `small_data`, with its rel-movielens1m rating and genre
    builds, made once for the tests that only read them."""
    users, movies, ratings = make_movielens()
    root = tmp_path_factory.mktemp("built") / "data"
    write_ml1m(root, users, movies, ratings, undated={0, 1, 2})
    rating_split, movie_split = simple_splits(movies, ratings)
    write_rel(root, users, movies, ratings, rating_split, movie_split)
    data = {"root": str(root), "users": users, "movies": movies, "ratings": ratings,
            "rating_split": rating_split, "movie_split": movie_split}
    out = root.parent / "out"
    for name in (RATING, GENRE):
        data[name] = tfrecords.build_tfrecords(name, str(root), str(out), num_shards=3,
                                               svd_dim=4, log=_quiet)
    return data


# --------------------------------------------------------------------- contents


def test_round_trip_equals_source_rows(built):
    out = built[RATING]
    assert out == os.path.join(os.path.dirname(out), RATING)
    users = {u[0]: u for u in built["users"]}
    movies = {m[0]: m for m in built["movies"]}
    for split in splits.SPLITS:
        got = tfrecords.read_examples(out, split)
        source = built["rating_split"][split]
        assert got["user_id"].tolist() == [r[0] for r in source]
        assert got["movie_id"].tolist() == [r[1] for r in source]
        assert got["rating"].tolist() == [float(r[2]) for r in source]
        assert got["timestamp"].tolist() == [r[3] for r in source]
        assert got["zip_code"].astype(str).tolist() == [users[r[0]][4] for r in source]
        assert got["age"].tolist() == [users[r[0]][2] for r in source]
        assert got["gender"].astype(str).tolist() == [users[r[0]][1] for r in source]
        assert got["occupation"].tolist() == [users[r[0]][3] for r in source]
        assert got["genres"].astype(str).tolist() == [movies[r[1]][3] for r in source]
        assert got["year"].tolist() == [movies[r[1]][2] for r in source]
        assert got["certificate"].astype(str).tolist() == [
            ["G", "PG", "R", ""][r[1] % 4] for r in source]
    genre = tfrecords.read_examples(built[GENRE], "test")
    source = built["movie_split"]["test"]
    assert genre["movie_id"].tolist() == [m[0] for m in source]
    assert genre["year"].tolist() == [m[2] for m in source]
    names = _genre_names()
    expected = np.zeros((len(source), len(names)), np.float32)
    for i, m in enumerate(source):
        for g in m[3].split("|"):
            expected[i, names.index(g)] = 1
    np.testing.assert_array_equal(genre["genres"], expected)
    # The task object encodes the same labels.
    task = tasks.make_task(tfrecords.read_metadata(built[GENRE])["task"])
    np.testing.assert_array_equal(task.encode_labels([m[3] for m in source]), expected)


def test_genre_examples_never_carry_the_genre_column_as_input(built):
    features, labels = next(iter(tfrecords.make_dataset(built[GENRE], "train", 8)))
    assert "genres" not in features
    assert labels.shape[1] == len(_genre_names())
    meta = tfrecords.read_metadata(built[GENRE])
    assert "genres" not in [c["name"] for c in meta["columns"]]
    assert "genres" not in [f["name"] for f in meta["features"]]
    assert meta["label"] == {"name": "genres", "shape": [len(_genre_names())]}


def test_metadata_counts_vocabularies_and_sources(built):
    meta = tfrecords.read_metadata(built[RATING])
    genre_meta = tfrecords.read_metadata(built[GENRE])
    for name, rows in built["rating_split"].items():
        assert meta["splits"][name]["examples"] == len(rows)
    for name, rows in built["movie_split"].items():
        assert genre_meta["splits"][name]["examples"] == len(rows)
    # Source paths are relative to the folder that holds them all.
    assert sorted(meta["sources"]) == sorted(
        ["users.csv", "movies.csv", "ratings/train.csv", "ratings/validation.csv",
         "ratings/test.csv"])
    assert sorted(genre_meta["sources"]) == sorted(
        ["classification/users.csv", "regression/movies.csv", "classification/movies/train.csv",
         "classification/movies/validation.csv", "classification/movies/test.csv",
         "regression/ratings/train.csv", "regression/ratings/validation.csv",
         "regression/ratings/test.csv"])
    assert all(len(v) == 32 for v in [*meta["sources"].values(),
                                      *genre_meta["sources"].values()])
    train = built["rating_split"]["train"]
    # Vocabularies come from the training split only.
    assert _vocab(meta, "movie_id") == sorted({r[1] for r in train})
    assert _vocab(meta, "user_id") == sorted({r[0] for r in train})
    train_users = {r[0] for r in train}
    assert _vocab(meta, "zip_code") == sorted({u[4][:3] for u in built["users"]
                                               if u[0] in train_users})
    assert _feature(meta, "zip_code")["prefix"] == 3
    assert _vocab(meta, "occupation")[0] == 0  # occupation 0 ("other") is a real value
    assert "" not in _vocab(meta, "certificate")  # unknown certificate maps to OOV
    assert _vocab(meta, "certificate") == ["G", "PG", "R"]
    assert _vocab(meta, "genres") == _genre_names()
    assert _feature(meta, "user_id")["num_oov_indices"] == 1
    assert _feature(meta, "timestamp")["enabled"] is False
    assert _vocab(genre_meta, "year") == sorted(m[2] for m in built["movie_split"]["train"])
    assert meta["task"]["stats"]["mean"] == pytest.approx(np.mean([r[2] for r in train]))
    assert (meta["dataset"], meta["protocol"], meta["task"]["name"]) == (
        RATING, "rel-movielens1m", "rating")


def test_test_only_ids_are_not_in_vocabulary(small_data, tmp_path):
    train_movies = {r[1] for r in small_data["rating_split"]["train"]}
    # Remove one movie from training: it must then be out of vocabulary.
    dropped = sorted(train_movies)[0]
    rating_split = dict(small_data["rating_split"])
    rating_split["train"] = [r for r in rating_split["train"] if r[1] != dropped]
    write_rel(small_data["root"], small_data["users"], small_data["movies"],
              small_data["ratings"], rating_split, small_data["movie_split"])
    out = _build(small_data, tmp_path)
    assert dropped not in _vocab(tfrecords.read_metadata(out), "movie_id")
    assert dropped in tfrecords.read_examples(out, "test")["movie_id"].tolist() or dropped in \
        tfrecords.read_examples(out, "validation")["movie_id"].tolist()


def test_graph_table_spectral_size_is_one_override(small_data, tmp_path):
    messages = []
    rating = _build(small_data, tmp_path, svd_dim=3, log=messages.append)
    genre = _build(small_data, tmp_path, GENRE, svd_dim=5)
    for out, size in ((rating, 3), (genre, 5)):
        assert tfrecords.read_metadata(out)["svd_dim"] == size
        with np.load(os.path.join(out, "movie_graph.npz")) as table:
            names = table["names"].tolist()
            assert table["values"].shape[1] == len(names)
        assert [n for n in names if n.startswith("svd_")] == [f"svd_{i}" for i in range(size)]
        assert tfrecords.read_metadata(out)["dense_tables"]["movie_graph"]["dim"] == len(names)
    # Another size is another build.
    messages.clear()
    _build(small_data, tmp_path, svd_dim=4, log=messages.append)
    assert "up to date" not in messages[0]
    # Without an override each table has its spec's size.
    out = _build(small_data, tmp_path, svd_dim=None)
    assert tfrecords.read_metadata(out)["svd_dim"] is None
    size = spec.load_spec(RATING).dense_tables[0].derived["svd_dim"]
    names = tfrecords.load_dense_table(out, with_names=True)[2]
    assert sum(n.startswith("svd_") for n in names) == size == 32
    # One positive int: no more per-task sizes.
    for bad in (0, -1, True, 2.5, "3", {"rating": 3, "genre": 4}):
        with pytest.raises(ValueError, match="svd_dim must be a positive int"):
            _build(small_data, tmp_path, svd_dim=bad)


@pytest.mark.slow
def test_build_command_line_sets_the_spectral_size(small_data, tmp_path):
    def build(*flags):
        return subprocess.run(
            [sys.executable, "-m", "experiments.build_tfrecords",
             f"--data_dir={small_data['root']}", f"--output_dir={tmp_path / 'out'}", *flags],
            cwd=REPO, capture_output=True, text=True, timeout=600,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})

    done = build("--dataset", GENRE, "--svd_dim", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    out = str(tmp_path / "out" / GENRE)
    meta = tfrecords.read_metadata(out)
    assert meta["svd_dim"] == 3 and meta["dataset"] == GENRE
    assert meta["num_shards"] == 4  # what experiments.train builds, so it is reused
    names = tfrecords.load_dense_table(out, with_names=True)[2]
    assert [n for n in names if n.startswith("svd_")] == ["svd_0", "svd_1", "svd_2"]
    assert not (tmp_path / "out" / RATING).exists()
    for bad in ("0", "genre=3"):
        done = build("--dataset", GENRE, "--svd_dim", bad)
        assert done.returncode != 0 and "svd_dim" in done.stderr, done.stderr[-3000:]


def test_rebuild_is_skipped_when_sources_unchanged(small_data, tmp_path):
    out = _build(small_data, tmp_path)
    stamp = os.path.getmtime(os.path.join(out, "metadata.json"))
    messages = []
    _build(small_data, tmp_path, log=messages.append)
    assert os.path.getmtime(os.path.join(out, "metadata.json")) == stamp
    assert "up to date" in messages[0]
    assert tfrecords.up_to_date_build(RATING, small_data["root"], str(tmp_path / "out"),
                                      num_shards=3, svd_dim=4) == out
    # The same files reached by another path (relative here) are the same build.
    messages.clear()
    tfrecords.build_tfrecords(RATING, os.path.relpath(small_data["root"]),
                              str(tmp_path / "out"), num_shards=3, svd_dim=4,
                              log=messages.append)
    assert "up to date" in messages[0]
    # `force` rebuilds anyway, to the same fingerprint.
    fingerprint = tfrecords.read_metadata(out)["fingerprint"]
    messages.clear()
    _build(small_data, tmp_path, force=True, log=messages.append)
    assert not any("up to date" in m for m in messages)
    assert tfrecords.read_metadata(out)["fingerprint"] == fingerprint
    # A changed source file triggers a rebuild.
    path = os.path.join(small_data["root"], "rel-movielens1m", "regression", "users.csv")
    with open(path, "a") as f:
        f.write("1000,F,25,3,55555\n")
    assert tfrecords.up_to_date_build(RATING, small_data["root"], str(tmp_path / "out"),
                                      num_shards=3, svd_dim=4) is None
    _build(small_data, tmp_path)
    assert tfrecords.read_metadata(out)["fingerprint"] != fingerprint


def test_malformed_input_leaves_no_partial_output(small_data, tmp_path):
    out = _build(small_data, tmp_path)
    before = tfrecords.read_metadata(out)
    files = sorted(os.listdir(out))
    path = os.path.join(small_data["root"], "rel-movielens1m", "regression", "ratings",
                        "train.csv")
    with open(path, "a") as f:
        f.write("1,2,3,4,5\n")
    line = len(small_data["rating_split"]["train"]) + 2
    with pytest.raises(DataFormatError, match=rf"train\.csv, line {line}: expected 4"):
        _build(small_data, tmp_path)
    # The earlier complete build is untouched, and no temporary folder is left behind.
    assert tfrecords.read_metadata(out) == before
    assert sorted(os.listdir(out)) == files
    assert os.listdir(tmp_path / "out") == [RATING]


def test_failed_first_build_leaves_nothing(small_data, tmp_path):
    path = os.path.join(small_data["root"], "rel-movielens1m", "classification", "movies",
                        "test.csv")
    with open(path, "a") as f:
        f.write('99,X,1999,NotAGenre,d,c,1,e,G,p,u\n')
    line = len(small_data["movie_split"]["test"]) + 2
    with pytest.raises(DataFormatError, match=rf"test\.csv, line {line}, field 'Genre'.*"
                                              "NotAGenre"):
        _build(small_data, tmp_path, GENRE)
    out = tmp_path / "out"
    assert not out.exists() or os.listdir(out) == []


def _fail_on_test_split(monkeypatch):
    """Makes the build fail while it writes the test split (after train and validation)."""
    write = tfrecords._write_shards

    def failing(spec_, task, rows, directory, split, *args):
        if split == "test":
            raise OSError("disk full (simulated)")
        return write(spec_, task, rows, directory, split, *args)

    monkeypatch.setattr(tfrecords, "_write_shards", failing)


def test_failure_while_writing_leaves_nothing(small_data, tmp_path, monkeypatch):
    _fail_on_test_split(monkeypatch)
    with pytest.raises(OSError, match="simulated"):
        _build(small_data, tmp_path)
    out = tmp_path / "out"
    assert not out.exists() or os.listdir(out) == []


def test_failure_while_writing_keeps_the_earlier_build(small_data, tmp_path, monkeypatch):
    out = _build(small_data, tmp_path)
    before = {f: os.path.getmtime(os.path.join(out, f)) for f in os.listdir(out)}
    _fail_on_test_split(monkeypatch)
    with pytest.raises(OSError, match="simulated"):
        _build(small_data, tmp_path, svd_dim=5)  # another build of the same spec
    assert os.listdir(tmp_path / "out") == [RATING]
    assert {f: os.path.getmtime(os.path.join(out, f)) for f in os.listdir(out)} == before
    assert tfrecords.read_metadata(out)["svd_dim"] == 4


# --------------------------------------------------------------------- raw ML-1M specs


@pytest.mark.parametrize("name", ["ml-1m-rating-chronological", "ml-1m-rating-random"])
def test_raw_ml1m_protocols(small_data, tmp_path, name):
    out = _build(small_data, tmp_path, name)
    meta = tfrecords.read_metadata(out)
    assert meta["protocol"] == name.rsplit("-", 1)[1]
    counts = [meta["splits"][s]["examples"] for s in splits.SPLITS]
    assert sum(counts) == len(small_data["ratings"])
    got = {s: tfrecords.read_examples(out, s) for s in splits.SPLITS}
    keys = [list(zip(g["user_id"], g["movie_id"])) for g in got.values()]
    assert sorted(sum(keys, [])) == sorted((r[0], r[1]) for r in small_data["ratings"])
    undated = {s: int(np.sum(g["timestamp"] == 0)) for s, g in got.items()}
    # Three ratings are undated; chronologically they are the oldest, so they train.
    assert sum(undated.values()) == 3
    if name.endswith("chronological"):
        assert undated == {"train": 3, "validation": 0, "test": 0}


@pytest.mark.parametrize("name", ML1M_SPECS)
def test_raw_ml1m_specs_build_without_certificate(small_data, tmp_path, name):
    """Raw ML-1M has no certificate column: no spec, feature or example may carry one (the
    build before dataset specs failed on it: "Cannot set an empty vocabulary")."""
    out = _build(small_data, tmp_path, name)
    meta = tfrecords.read_metadata(out)
    assert "certificate" not in json.dumps(meta)
    assert meta["dataset"] == name
    for split in splits.SPLITS:
        assert "certificate" not in tfrecords.read_examples(out, split)
    for f in meta["features"]:
        if f["enabled"] and f["type"] != "numeric" and f["hash_buckets"] is None:
            assert f["vocabulary"], f["name"]
    expected = len(small_data["movies"] if "genre" in name else small_data["ratings"])
    assert sum(meta["splits"][s]["examples"] for s in splits.SPLITS) == expected


def test_enabled_feature_without_training_values_is_a_clear_error(tmp_path):
    users, movies, ratings = make_movielens()
    movies = [(m, title, year, genres) for m, title, year, genres in movies]
    root = tmp_path / "data"
    d = write_ml1m(root, users, movies, ratings)
    # Titles without "(year)": the genre task's only feature, year, is then always missing.
    with open(os.path.join(d, "movies.dat"), "w", encoding="latin-1") as f:
        f.writelines(f"{m}::{title}::{genres}\n" for m, title, _, genres in movies)
    with pytest.raises(DataFormatError) as error:
        tfrecords.build_tfrecords("ml-1m-genre", str(root), str(tmp_path / "out"),
                                  log=_quiet)
    assert error.value.path == spec.load_spec("ml-1m-genre").path
    assert error.value.field == "features.year"
    assert "feature 'year' has no value in the training split" in str(error.value)
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


# --------------------------------------------------------------------- custom specs


def _shop_spec(root, **feature_options):
    return {
        "name": "shop",
        "root": str(root),
        "tables": {"events": {
            "files": "events.csv", "format": {"type": "csv"},
            "columns": [{"name": "user", "dtype": "string"},
                        {"name": "brand", "dtype": "string", "optional": True},
                        {"name": "price", "dtype": "float32", "optional": True},
                        {"name": "clicked", "dtype": "int64", "values": [0, 1]}]}},
        "examples": {"table": "events"},
        "split": {"type": "ordered", "fractions": [0.8, 0.1, 0.1]},
        "task": {"name": "click", "type": "binary", "label": "clicked"},
        "features": [{"name": "user", "type": "categorical"},
                     {"name": "brand", "type": "categorical", **feature_options},
                     {"name": "price", "type": "numeric", "clip": [0, None],
                      "transform": ["log1p", "standardize"]}],
    }


def _shop_rows(n=50, brand_from=45):
    """Events whose brand is empty in the first `brand_from` rows (the training split)."""
    return [(f"u{i % 7}", f"b{i % 3}" if i >= brand_from else "", "" if i % 5 == 0 else
             f"{i * 1.5:.1f}", i % 2) for i in range(n)]


def _write_shop(tmp_path, rows, raw):
    data = tmp_path / "shop"
    data.mkdir(exist_ok=True)
    pd.DataFrame(rows, columns=["user", "brand", "price", "clicked"]).to_csv(
        data / "events.csv", index=False)
    path = tmp_path / "shop.json"
    path.write_text(json.dumps(raw))
    return str(path)


def test_custom_spec_feature_all_missing_in_training_names_the_feature(tmp_path):
    path = _write_shop(tmp_path, _shop_rows(), _shop_spec(tmp_path / "shop"))
    with pytest.raises(DataFormatError) as error:
        tfrecords.build_tfrecords(path, output_dir=str(tmp_path / "out"), log=_quiet)
    assert error.value.path == path and error.value.field == "features.brand"
    assert str(error.value).startswith(f"{path}, field 'features.brand': feature 'brand'")
    assert "'shop'" in str(error.value)
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


@pytest.mark.parametrize("options", [{"enabled": False}, {"vocabulary": {"hash_buckets": 8}}])
def test_custom_spec_builds_when_the_empty_feature_is_off_or_hashed(tmp_path, options):
    rows = _shop_rows()
    path = _write_shop(tmp_path, rows, _shop_spec(tmp_path / "shop", **options))
    out = tfrecords.build_tfrecords(path, output_dir=str(tmp_path / "out"), num_shards=2,
                                    log=_quiet)
    assert out == str(tmp_path / "out" / "shop")
    meta = tfrecords.read_metadata(out)
    assert meta["spec_path"] == path and meta["task"]["type"] == "binary"
    assert [meta["splits"][s]["examples"] for s in splits.SPLITS] == [40, 5, 5]
    got = tfrecords.read_examples(out, "test")
    assert got["user"].astype(str).tolist() == [r[0] for r in rows[45:]]
    assert got["brand"].astype(str).tolist() == [r[1] for r in rows[45:]]
    assert got["clicked"].tolist() == [float(r[3]) for r in rows[45:]]
    np.testing.assert_allclose(got["price"], [float(r[2] or 0) for r in rows[45:]])
    price = _feature(meta, "price")
    train_prices = np.log1p([float(r[2] or 0) for r in rows[:40]])
    assert price["mean"] == pytest.approx(train_prices.mean(), rel=1e-6)
    assert price["std"] == pytest.approx(train_prices.std(), rel=1e-6)


def _parquet_available():
    """Whether pyarrow is installed: it is a requirement, so CI must have it (as with
    conftest.require_shared, skipping is only allowed outside CI)."""
    if importlib.util.find_spec("pyarrow") is None:
        if os.environ.get("CI"):
            pytest.fail("pyarrow is missing (requirements.txt), and tests may not skip in CI")
        pytest.skip("pyarrow not installed (pip install -r requirements.txt)")


def _parquet_spec(root, files="events.parquet"):
    raw = _shop_spec(root)
    raw["name"] = "shop-parquet"
    raw["tables"]["events"]["files"] = files
    raw["tables"]["events"]["format"] = {"type": "parquet"}
    raw["features"][1]["enabled"] = False
    return raw


def test_parquet_table_builds(tmp_path):
    _parquet_available()
    rows = _shop_rows(brand_from=0)
    data = tmp_path / "shop"
    data.mkdir()
    frame = pd.DataFrame({"user": [r[0] for r in rows], "brand": [r[1] for r in rows],
                          "price": [float(r[2]) if r[2] else None for r in rows],
                          "clicked": [r[3] for r in rows], "unused": np.arange(len(rows))})
    frame.to_parquet(data / "events.parquet", index=False)
    path = tmp_path / "shop.json"
    path.write_text(json.dumps(_parquet_spec(data)))
    out = tfrecords.build_tfrecords(str(path), output_dir=str(tmp_path / "out"), num_shards=2,
                                    log=_quiet)
    meta = tfrecords.read_metadata(out)
    assert [meta["splits"][s]["examples"] for s in splits.SPLITS] == [40, 5, 5]
    assert _vocab(meta, "user") == sorted({r[0] for r in rows[:40]})
    got = tfrecords.read_examples(out, "train")
    assert got["user"].astype(str).tolist() == [r[0] for r in rows[:40]]
    assert got["brand"].astype(str).tolist() == [r[1] for r in rows[:40]]
    np.testing.assert_allclose(got["price"], [float(r[2] or 0) for r in rows[:40]])
    assert got["clicked"].tolist() == [float(r[3]) for r in rows[:40]]


def test_parquet_bad_value_names_the_row_and_column(tmp_path):
    _parquet_available()
    data = tmp_path / "shop"
    data.mkdir()
    frame = pd.DataFrame({"user": ["a", "b", "c"], "brand": ["x", "y", "z"],
                          "price": [1.0, 2.0, 3.0], "clicked": [0, 2, 1]})
    frame.to_parquet(data / "events.parquet", index=False)
    path = tmp_path / "shop.json"
    path.write_text(json.dumps(_parquet_spec(data)))
    with pytest.raises(DataFormatError, match=r"events\.parquet, line 2, field 'clicked'"):
        tfrecords.build_tfrecords(str(path), output_dir=str(tmp_path / "out"), log=_quiet)
    frame.drop(columns="price").to_parquet(data / "events.parquet", index=False)
    with pytest.raises(DataFormatError, match=r"events\.parquet, field 'price': no column"):
        tfrecords.build_tfrecords(str(path), output_dir=str(tmp_path / "out"), log=_quiet)
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


# --------------------------------------------------------------------- spec errors


def test_every_shipped_spec_loads():
    names = spec.builtin_specs()
    assert {RATING, GENRE, *ML1M_SPECS, "criteo"} <= set(names)
    for name in names:
        s = spec.load_spec(name)
        assert s.name == name and s.path == os.path.join(spec.BUILTIN_DIR, f"{name}.json")
    assert spec.movielens_spec("rating") == RATING
    assert spec.movielens_spec("genre", "chronological") == "ml-1m-genre"
    with pytest.raises(ValueError, match="no MovieLens spec"):
        spec.movielens_spec("click")
    with pytest.raises(FileNotFoundError, match="no dataset spec 'ml-1m-ratings'"):
        spec.load_spec("ml-1m-ratings")


def _raw(name="ml-1m-rating-random"):
    with open(spec.spec_path(name)) as f:
        return json.load(f)


def _column(raw, table, name):
    return next(c for c in raw["tables"][table]["columns"] if c["name"] == name)


def _rename_key(d, old, new):
    d[new] = d.pop(old)


# (mutation of the ml-1m-rating-random spec, key path, words of the message)
BAD_SPECS = [
    (lambda r: _rename_key(_column(r, "ratings", "rating"), "dtype", "dtpye"),
     "tables.ratings.columns[2]", "unknown key(s) ['dtpye']"),
    (lambda r: _column(r, "ratings", "rating").update(dtype="int32"),
     "tables.ratings.columns[2].dtype", "expected one of ['int64', 'float32', 'string', "
                                        "'int64_list'], got 'int32'"),
    (lambda r: _column(r, "users", "age").update(values=7),
     "tables.users.columns[2].values", "expected a list of allowed values"),
    (lambda r: _column(r, "ratings", "timestamp").update(missing="none"),
     "tables.ratings.columns[3].missing", "expected a int64 value"),
    (lambda r: _column(r, "ratings", "user_id").update(references="user"),
     "tables.ratings.columns[0].references", "no table 'user'"),
    (lambda r: _rename_key(r["tables"]["movies"], "key", "keys"),
     "tables.movies", "unknown key(s) ['keys']"),
    (lambda r: r["tables"]["movies"]["format"].update(type="dat"),
     "tables.movies.format.type", "got 'dat'"),
    (lambda r: r["features"][1].update(type="categorial"),
     "features[1].type", "got 'categorial'"),
    (lambda r: r["features"][0].update(vocabulary={"min_cuont": 2}),
     "features[0].vocabulary", "unknown key(s) ['min_cuont']"),
    (lambda r: r["features"][0].update(vocabulary={"min_count": "2"}),
     "features[0].vocabulary.min_count", "expected a positive int, got '2'"),
    (lambda r: r["features"][0].update(name="userid"),
     "features[0].name", "no column 'userid'"),
    (lambda r: r["features"][8].update(transform=["log"]),
     "features[8].transform", "got 'log'"),
    (lambda r: r["split"].update(fractions=[0.8, 0.2]),
     "split.fractions", "expected 3 positive proportions"),
    (lambda r: r["task"].update(label="stars"), "task.label", "no column 'stars'"),
    (lambda r: _rename_key(r["dense_tables"][0]["derived"], "svd_dim", "svd_dm"),
     "dense_tables[0].derived", "unknown key(s) ['svd_dm']"),
    (lambda r: r["features"].append({"name": "rating", "type": "numeric"}),
     "features[9].name", "'rating' is the label"),
    # Shapes the build could not handle, refused on load.
    (lambda r: r["features"][0].update(prefix=2), "features[0].prefix", "string categoricals"),
    (lambda r: r["features"][8].update(vocabulary={"hash_buckets": 8}),
     "features[8].vocabulary.hash_buckets", "only categorical features hash"),
    (lambda r: r["features"][0].update(vocabulary={"num_oov_indices": 0}),
     "features[0].vocabulary.num_oov_indices", "unseen values need a row"),
    (lambda r: _column(r, "ratings", "rating").update(optional=True), "task.label",
     "not optional"),
    (lambda r: _column(r, "users", "zip_code").update(range=[0, 9]),
     "tables.users.columns[4].range", "numeric dtype"),
    (lambda r: _column(r, "users", "user_id").update(dtype="string"), "examples.join[0].on",
     "another dtype"),
    (lambda r: r["dense_tables"][0].update(key="zip_code"), "dense_tables[0].key",
     "int64 ids"),
    (lambda r: r["dense_tables"][0]["derived"].update(splits="most"),
     "dense_tables[0].derived.splits", "expected one of ['all', 'train']"),
    (lambda r: r["dense_tables"][0]["derived"]["user_shares"].update(sex=["F"]),
     "dense_tables[0].derived.user_shares", "no column 'sex'"),
]


@pytest.mark.parametrize("mutate,key,words", BAD_SPECS, ids=[c[1] for c in BAD_SPECS])
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_bad_spec_names_file_and_key(tmp_path, mutate, key, words, suffix):
    raw = _raw()
    mutate(raw)
    path = tmp_path / f"bad{suffix}"
    path.write_text(json.dumps(raw, indent=1))  # JSON is YAML too
    with pytest.raises(SpecError) as error:
        spec.load_spec(str(path))
    assert (error.value.path, error.value.key) == (str(path), key)
    assert str(error.value).startswith(f"{path}: {key}: ")
    assert words in str(error.value)
    # parse_spec of the same data says the same.
    with pytest.raises(SpecError) as error:
        spec.parse_spec(copy.deepcopy(raw), "my-spec.json")
    assert str(error.value).startswith(f"my-spec.json: {key}: ") and words in str(error.value)


def test_spec_top_level_typo_and_bad_json(tmp_path):
    raw = _raw()
    _rename_key(raw, "features", "featurse")
    with pytest.raises(SpecError, match=r"unknown key\(s\) \['featurse'\]") as error:
        spec.parse_spec(raw, "top.json")
    assert error.value.path == "top.json" and str(error.value).startswith("top.json: ")
    path = tmp_path / "broken.json"
    path.write_text('{"name": "x",\n "tables": {,}}')
    with pytest.raises(SpecError, match=rf"{path}: not valid JSON: line 2"):
        spec.load_spec(str(path))
    # A spec error is also a ValueError, and building from a bad spec raises it.
    path.write_text(json.dumps({**_raw(), "split": {"type": "shuffled"}}))
    with pytest.raises(ValueError, match=rf"{path}: split.type: expected one of"):
        tfrecords.build_tfrecords(str(path), str(tmp_path), str(tmp_path / "out"), log=_quiet)


# --------------------------------------------------------------------- reading


def test_dataset_shuffle_is_seeded_and_complete(built):
    out = built[RATING]

    def order(seed, **kwargs):
        ds = tfrecords.make_dataset(out, "train", 50, shuffle=True, seed=seed, **kwargs)
        return [pair for f, _ in ds.as_numpy_iterator()
                for pair in zip(f["user_id"].tolist(), f["movie_id"].tolist())]

    source = sorted((r[0], r[1]) for r in built["rating_split"]["train"])
    for kwargs in ({}, {"in_memory": True}, {"cache": True}):
        first = order(1, **kwargs)
        assert sorted(first) == source
        assert first == order(1, **kwargs)
        assert first != order(2, **kwargs)
        assert first != sorted(first)


@pytest.mark.parametrize("in_memory", [True, False])
def test_a_held_out_slice_and_the_rest_partition_the_split(built, in_memory):
    def pairs(part, shuffle=False, seed=0, in_memory=in_memory):
        ds = tfrecords.make_dataset(built[RATING], "train", 7, shuffle=shuffle, seed=seed,
                                    in_memory=in_memory, part=part, holdout_every=3)
        return [pair for f, _ in ds.as_numpy_iterator()
                for pair in zip(f["user_id"].tolist(), f["movie_id"].tolist())]

    held, rest = pairs("held"), pairs("rest")
    assert sorted(held + rest) == sorted(pairs(None)) and not set(held) & set(rest)
    assert 0 < len(held) < len(rest)
    # The same slice whatever the shuffle, streaming or not: architecture weights never
    # see the rest.
    assert sorted(pairs("held", shuffle=True, seed=5)) == sorted(held)
    assert sorted(pairs("held", in_memory=not in_memory)) == sorted(held)
    with pytest.raises(ValueError, match="holdout_every"):
        tfrecords.make_dataset(built[RATING], "train", 7, part="held", holdout_every=1)


def test_the_held_out_slice_is_every_nth_row_of_each_file(small_data, tmp_path):
    # Blocks of 5 rows: the slice runs across blocks of each file.
    build = _build(small_data, tmp_path, block_rows=5)
    meta = tfrecords.read_metadata(build)
    expected = []
    for name in meta["splits"]["train"]["files"]:
        rows = [(int(u), int(m)) for block in tf.data.TFRecordDataset(
                    os.path.join(build, name), compression_type=meta["compression"])
                for parsed in [blocks.parse_block(block, meta["columns"], meta["label"])]
                for u, m in zip(parsed["user_id"].numpy(), parsed["movie_id"].numpy())]
        assert len(rows) > 10  # several blocks per file
        expected += rows[::4]
    held = tfrecords.read_examples(build, "train", part="held", holdout_every=4)
    assert list(zip(held["user_id"].tolist(), held["movie_id"].tolist())) == expected


def test_in_memory_reshuffles_each_epoch(built):
    ds = tfrecords.make_dataset(built[RATING], "train", 1000, shuffle=True, in_memory=True)
    epochs = [next(iter(ds))[0]["user_id"].numpy().tolist() for _ in range(2)]
    assert epochs[0] != epochs[1] and sorted(epochs[0]) == sorted(epochs[1])


def test_dense_movie_table(built):
    ids, values, names = tfrecords.load_dense_table(built[GENRE], with_names=True)
    assert ids.tolist() == [m[0] for m in built["movies"]]
    assert values.shape == (len(ids), 2 + 5 + 1 + 7 + 21 + 4) == (len(ids), len(names))
    assert names[:8] == ["log_count", "mean_rating"] + [f"share_rating_{r}" for r in
                                                         range(1, 6)] + ["share_gender_F"]
    assert names[8:15] == [f"share_age_{a}" for a in (1, 18, 25, 35, 45, 50, 56)]
    assert names[15:36] == [f"share_occupation_{o}" for o in range(21)]
    assert names[36:] == [f"svd_{i}" for i in range(4)]
    assert np.isfinite(values).all()
    # The genre task's graph is every rating.
    counts = {}
    for r in built["ratings"]:
        counts[r[1]] = counts.get(r[1], 0) + 1
    np.testing.assert_allclose(values[:, 0], [np.log1p(counts.get(m, 0)) for m in ids],
                               rtol=1e-6)
    same = tfrecords.load_dense_table(built[GENRE], "movie_graph")
    np.testing.assert_array_equal(same[1], values)
    with pytest.raises(KeyError):
        tfrecords.load_dense_table(built[GENRE], "user_graph")


def test_rating_graph_uses_training_ratings_only(built):
    ids, values = tfrecords.load_dense_table(built[RATING], "movie_graph")
    counts, sums = {}, {}
    for u, m, r, _ in built["rating_split"]["train"]:
        counts[m] = counts.get(m, 0) + 1
        sums[m] = sums.get(m, 0) + r
    np.testing.assert_allclose(values[:, 0], [np.log1p(counts.get(m, 0)) for m in ids],
                               rtol=1e-6)
    rated = [i for i, m in enumerate(ids) if m in counts]
    np.testing.assert_allclose(values[rated, 1], [sums[ids[i]] / counts[ids[i]] for i in rated],
                               rtol=1e-5)


def test_shard_by_file_across_workers(built):
    import tensorflow as tf
    seen = []
    for worker in range(3):
        context = tf.distribute.InputContext(num_input_pipelines=3, input_pipeline_id=worker)
        got = tfrecords.read_examples(built[RATING], "train", input_context=context)
        seen.append(list(zip(got["user_id"], got["movie_id"])))
    assert all(seen) and sum(map(len, seen)) == len(built["rating_split"]["train"])
    assert not set(seen[0]) & set(seen[1])
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=0)
    with pytest.raises(ValueError, match="cannot be sharded"):
        tfrecords.make_dataset(built[RATING], "test", 8, input_context=context)


def test_metadata_is_plain_json(built):
    with open(os.path.join(built[RATING], "metadata.json")) as f:
        meta = json.load(f)
    names = [f["name"] for f in meta["features"]]
    assert names[:2] == ["user_id", "gender"]
    assert [c["name"] for c in meta["columns"]] == names
    assert _vocab(meta, "genres") == _genre_names()
    assert meta["spec"] == _raw(RATING) and meta["spec_path"] == spec.spec_path(RATING)
    with open(os.path.join(built[GENRE], "metadata.json")) as f:
        genre = json.load(f)
    assert genre["task"]["classes"] == _genre_names() and len(_genre_names()) == 18
    assert genre["task"]["separator"] == "|"
    assert genre["dense_tables"]["movie_graph"]["key"] == "movie_id"


def test_a_yaml_spec_with_joins_reads_like_its_json(tmp_path):
    """YAML 1.1 would read a join's `on:` key as the boolean True."""
    import yaml

    from deepmix_tf.data.spec import load_spec, spec_path

    source = spec_path("movielens1m-rating")
    with open(source) as f:
        text = yaml.safe_dump(json.load(f)).replace("'on':", "on:")
    assert "\n    on: user_id" in text or "on: user_id" in text
    path = tmp_path / "movielens1m-rating.yaml"
    path.write_text(text)
    assert load_spec(str(path)).examples == load_spec(source).examples


def test_parquet_integers_with_nulls_read_as_integers(tmp_path):
    """pandas gives an integer column with nulls back as floats (3.0): still integers."""
    _parquet_available()
    from deepmix_tf.data import readers
    from deepmix_tf.data.spec import parse_spec

    pd.DataFrame({"n": [3, None, 5], "clicked": [0, 1, 1]}).to_parquet(
        tmp_path / "t.parquet", index=False)
    spec = parse_spec({
        "name": "t", "root": str(tmp_path),
        "tables": {"t": {"files": "t.parquet", "format": {"type": "parquet"}, "columns": [
            {"name": "n", "dtype": "int64", "optional": True},
            {"name": "clicked", "dtype": "int64", "values": [0, 1]}]}},
        "examples": {"table": "t"}, "split": {"type": "ordered"},
        "task": {"type": "binary", "label": "clicked"},
        "features": [{"name": "n", "type": "numeric"}]}, str(tmp_path / "t.json"))
    frame = readers.read_table(spec.tables["t"], spec.root)
    assert frame["n"].tolist() == [3, 0, 5] and frame["n"].dtype == np.int64
