"""Where data is looked for, the explicit download, and safe extraction."""

import hashlib
import os
import zipfile

import pytest

from conftest import make_movielens, write_ml1m
from deepmix_tf.data import locate


def test_data_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPMIX_DATA_DIR", str(tmp_path / "env"))
    assert locate.resolve_data_dir(str(tmp_path / "flag")) == str(tmp_path / "flag")
    assert locate.resolve_data_dir() == str(tmp_path / "env")
    monkeypatch.delenv("DEEPMIX_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert locate.resolve_data_dir() == str(tmp_path / "cache" / "deepmix_tf" / "data")


def test_missing_data_says_what_to_put_where(tmp_path):
    with pytest.raises(locate.DataNotFoundError) as error:
        locate.ml1m_dir(str(tmp_path))
    message = str(error.value)
    assert os.path.join(str(tmp_path), "ml-1m") in message and "ratings.dat" in message
    assert "experiments.download_data" in message
    with pytest.raises(locate.DataNotFoundError, match="--protocol=chronological"):
        locate.rel_movielens1m_dir(str(tmp_path))


def _zip_of_ml1m(tmp_path):
    source = write_ml1m(tmp_path / "src", *make_movielens())
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in locate.ML1M_FILES:
            z.write(os.path.join(source, name), f"ml-1m/{name}")
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def test_download_checks_md5_and_extracts(tmp_path):
    archive, md5 = _zip_of_ml1m(tmp_path)
    root = tmp_path / "root"
    path = locate.download_ml1m(str(root), url=archive.as_uri(), md5=md5)
    assert sorted(os.listdir(path)) == sorted(locate.ML1M_FILES)
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
