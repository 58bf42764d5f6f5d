"""Where data is looked for, the explicit download, and safe extraction."""

import hashlib
import json
import os
import zipfile

import pytest

from conftest import make_movielens, write_ml1m
from deepmix_tf.data import locate, spec, tfrecords

ML1M_FILES = ("users.dat", "movies.dat", "ratings.dat")


def test_data_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPMIX_DATA_DIR", str(tmp_path / "env"))
    assert locate.resolve_data_dir(str(tmp_path / "flag")) == str(tmp_path / "flag")
    assert locate.resolve_data_dir() == str(tmp_path / "env")
    # A spec's files are under the data root, in its `data_subdir`.
    ml1m = spec.load_spec("ml-1m-rating-random")
    assert ml1m.data_root() == str(tmp_path / "env" / "ml-1m")
    assert ml1m.data_root(str(tmp_path / "flag")) == str(tmp_path / "flag" / "ml-1m")
    assert spec.load_spec("movielens1m-genre").source_files()[0] == str(
        tmp_path / "env" / "rel-movielens1m" / "classification" / "users.csv")
    monkeypatch.delenv("DEEPMIX_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert locate.resolve_data_dir() == str(tmp_path / "cache" / "deepmix_tf" / "data")
    assert ml1m.data_root() == str(tmp_path / "cache" / "deepmix_tf" / "data" / "ml-1m")


@pytest.mark.parametrize("name", ["ml-1m-rating-random", "ml-1m-rating-chronological",
                                  "ml-1m-genre"])
def test_missing_data_says_what_to_put_where(tmp_path, name):
    out = tmp_path / "out"
    with pytest.raises(locate.DataNotFoundError) as error:
        tfrecords.build_tfrecords(name, str(tmp_path), str(out), log=lambda _: None)
    message = str(error.value)
    assert os.path.join(str(tmp_path), "ml-1m") in message and "ratings.dat" in message
    assert "experiments.download_data" in message and name in message
    assert not out.exists()  # nothing is written before the sources are found
    assert isinstance(error.value, FileNotFoundError)


def test_missing_rel_movielens1m_points_to_the_raw_protocols(tmp_path):
    for name in ("movielens1m-rating", "movielens1m-genre"):
        with pytest.raises(locate.DataNotFoundError, match="--protocol=chronological") as e:
            tfrecords.build_tfrecords(name, str(tmp_path), str(tmp_path / "out"),
                                      log=lambda _: None)
        assert os.path.join(str(tmp_path), "rel-movielens1m") in str(e.value)
    # Only the missing files are named.
    users, movies, ratings = make_movielens()
    write_ml1m(tmp_path, users, movies, ratings)
    os.remove(tmp_path / "ml-1m" / "movies.dat")
    with pytest.raises(locate.DataNotFoundError) as error:
        tfrecords.source_files(spec.load_spec("ml-1m-genre"), str(tmp_path))
    message = str(error.value).split("\n")[0]
    assert "movies.dat" in message and "users.dat" not in message


def test_missing_files_of_a_spec_with_a_root(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({
        "name": "events", "root": "data",
        "tables": {"events": {"files": "events.csv", "format": {"type": "csv"},
                              "columns": [{"name": "user"}, {"name": "clicked",
                                                             "dtype": "int64",
                                                             "values": [0, 1]}]}},
        "examples": {"table": "events"}, "split": {"type": "random"},
        "task": {"type": "binary", "label": "clicked"},
        "features": [{"name": "user", "type": "categorical"}]}))
    s = spec.load_spec(str(path))
    assert s.data_root("/elsewhere") == str(tmp_path / "data")  # root: beside the spec
    with pytest.raises(locate.DataNotFoundError, match="the spec's root is") as error:
        tfrecords.build_tfrecords(s, output_dir=str(tmp_path / "out"), log=lambda _: None)
    assert str(tmp_path / "data" / "events.csv") in str(error.value)


def _zip_of_ml1m(tmp_path):
    source = write_ml1m(tmp_path / "src", *make_movielens())
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ML1M_FILES:
            z.write(os.path.join(source, name), f"ml-1m/{name}")
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def test_download_checks_md5_and_extracts(tmp_path):
    archive, md5 = _zip_of_ml1m(tmp_path)
    root = tmp_path / "root"
    path = locate.download_ml1m(str(root), url=archive.as_uri(), md5=md5)
    assert sorted(os.listdir(path)) == sorted(ML1M_FILES)
    assert os.listdir(root) == ["ml-1m"]  # no temporary files left


def test_download_with_wrong_md5_writes_nothing(tmp_path):
    archive, _ = _zip_of_ml1m(tmp_path)
    root = tmp_path / "root"
    with pytest.raises(ValueError, match="md5"):
        locate.download_ml1m(str(root), url=archive.as_uri(), md5="0" * 32)
    assert os.listdir(root) == []


def test_download_offline_gives_clear_message(tmp_path):
    with pytest.raises(locate.DataNotFoundError, match="by hand"):
        locate.download_ml1m(str(tmp_path), url="http://127.0.0.1:9/ml-1m.zip", timeout=5)


def test_extraction_refuses_paths_escaping_the_target(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ml-1m/users.dat", "1::M::25::4::12345\n")
        z.writestr("../../escaped.txt", "x")
    with pytest.raises(ValueError, match="outside"):
        locate.safe_extract(str(archive), str(tmp_path / "target"))
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "target" / "ml-1m").exists()
