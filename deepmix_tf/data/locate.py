"""Where the data lives, and the one explicit download.

A data root holds `ml-1m/` (the GroupLens files) and/or `rel-movielens1m/` (the rLLM CSVs). It
is, in order: the `--data_dir` flag, the `DEEPMIX_DATA_DIR` environment variable, or
`$XDG_CACHE_HOME/deepmix_tf/data` (default `~/.cache/deepmix_tf/data`).
"""

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile

DATA_DIR_ENV = "DEEPMIX_DATA_DIR"
ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
ML1M_MD5 = "c4d9eecfca2ab87c1945afe126590906"
ML1M_FILES = ("users.dat", "movies.dat", "ratings.dat")
REL_FILES = (
    "regression/users.csv", "regression/movies.csv",
    "regression/ratings/train.csv", "regression/ratings/validation.csv",
    "regression/ratings/test.csv",
    "classification/users.csv", "classification/movies/train.csv",
    "classification/movies/validation.csv", "classification/movies/test.csv",
)
REL_SOURCE = "the rLLM project (rllm-project/rllm on GitHub, dataset 'rel-movielens1m')"


class DataNotFoundError(FileNotFoundError):
    """The data is not where it was looked for; the message says what to put where."""


def default_data_dir():
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "deepmix_tf", "data")


def resolve_data_dir(data_dir=None):
    """The data root: the argument, else $DEEPMIX_DATA_DIR, else the cache directory."""
    return os.path.abspath(data_dir or os.environ.get(DATA_DIR_ENV) or default_data_dir())


def _missing(root, sub, files):
    return [os.path.join(root, sub, f) for f in files
            if not os.path.isfile(os.path.join(root, sub, f))]


def ml1m_dir(root):
    """The `ml-1m/` folder under `root`, or a DataNotFoundError saying how to get it."""
    missing = _missing(root, "ml-1m", ML1M_FILES)
    if missing:
        raise DataNotFoundError(
            f"MovieLens-1M not found: missing {', '.join(missing)}.\n"
            f"Put users.dat, movies.dat and ratings.dat from {ML1M_URL} into "
            f"{os.path.join(root, 'ml-1m')}/, or download them with\n"
            f"  python -m experiments.download_data --data_dir {root}\n"
            f"(the data root comes from --data_dir, else ${DATA_DIR_ENV}, "
            f"else {default_data_dir()}).")
    return os.path.join(root, "ml-1m")


def rel_movielens1m_dir(root):
    """The `rel-movielens1m/` folder under `root`, or a DataNotFoundError saying how to get it."""
    missing = _missing(root, "rel-movielens1m", REL_FILES)
    if missing:
        raise DataNotFoundError(
            f"rel-movielens1m not found: missing {', '.join(missing[:3])}"
            f"{' and more' if len(missing) > 3 else ''}.\n"
            f"Get the rel-movielens1m folder from {REL_SOURCE} and put it at "
            f"{os.path.join(root, 'rel-movielens1m')}/ (with regression/ and classification/), "
            f"or use --protocol=chronological or --protocol=random, which need only ml-1m/ "
            f"(the data root comes from --data_dir, else ${DATA_DIR_ENV}, "
            f"else {default_data_dir()}).")
    return os.path.join(root, "rel-movielens1m")


def md5_of_file(path, chunk_size=1 << 20):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_extract(archive, target):
    """Extracts a zip into `target`, refusing any member whose path would land outside it."""
    target = os.path.realpath(target)
    with zipfile.ZipFile(archive) as z:
        for member in z.infolist():
            dest = os.path.realpath(os.path.join(target, member.filename))
            if os.path.commonpath([dest, target]) != target:
                raise ValueError(
                    f"{archive}: member {member.filename!r} would be written outside {target}; "
                    "refusing to extract")
        z.extractall(target)


def download_ml1m(root, url=ML1M_URL, md5=ML1M_MD5, timeout=60):
    """Downloads the GroupLens ML-1M zip, checks its md5 and extracts it to `root/ml-1m/`.

    Nothing is written under `root` unless the download is complete and its checksum right.

    Returns:
        The path of the `ml-1m/` folder.
    """
    os.makedirs(root, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        archive = os.path.join(tmp, "ml-1m.zip")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, \
                    open(archive, "wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError) as e:
            raise DataNotFoundError(
                f"Could not download {url} ({e}). Without network access, put users.dat, "
                f"movies.dat and ratings.dat of MovieLens-1M into {os.path.join(root, 'ml-1m')}/ "
                "by hand.") from e
        actual = md5_of_file(archive)
        if md5 and actual != md5:
            raise ValueError(f"{url}: md5 {actual} does not match the expected {md5}; "
                             "the download is corrupt or the file changed")
        extract_dir = os.path.join(tmp, "extract")
        safe_extract(archive, extract_dir)
        extracted = os.path.join(extract_dir, "ml-1m")
        final = os.path.join(root, "ml-1m")
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(extracted, final)
    return final
