"""Where the data lives, and the explicit downloads.

A data root holds one folder per dataset (`ml-1m/`, `rel-movielens1m/`, `criteo/`: a spec's
`data_subdir`). It is, in order: the `--data_dir` flag, the `DEEPMIX_DATA_DIR` environment
variable, or
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
REL_SOURCE = "the rLLM project (rllm-project/rllm on GitHub, dataset 'rel-movielens1m')"


CRITEO_URL = ("https://go.criteo.net/criteo-research-kaggle-display-advertising-challenge-"
              "dataset.tar.gz")


class DataNotFoundError(FileNotFoundError):
    """The data is not where it was looked for; the message says what to put where."""


def default_data_dir():
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "deepmix_tf", "data")


def resolve_data_dir(data_dir=None):
    """The data root: the argument, else $DEEPMIX_DATA_DIR, else the cache directory."""
    return os.path.abspath(data_dir or os.environ.get(DATA_DIR_ENV) or default_data_dir())


# How to get the data of a spec's `download` entry, for the message when it is missing.
HOW_TO_GET = {
    "ml-1m": (f"Put users.dat, movies.dat and ratings.dat from {ML1M_URL} into "
              "{root}/, or download them with\n  python -m experiments.download_data "
              "--data_dir {data_dir}"),
    "rel-movielens1m": (f"Get the rel-movielens1m folder from {REL_SOURCE} and put it at "
                        "{root}/ (with regression/ and classification/), or use "
                        "--protocol=chronological or --protocol=random, which need only "
                        "ml-1m/"),
    "criteo": (f"Criteo's Display Advertising Challenge data (train.txt) is at {CRITEO_URL} "
               "(accept its licence there); unpack train.txt into {root}/, or run\n  "
               "python -m experiments.download_data --dataset criteo --data_dir {data_dir}"),
}


def missing_data_error(spec, missing, data_dir=None):
    """The DataNotFoundError of a spec whose files are missing: what, where, how to get it."""
    root = spec.data_root(data_dir)
    how = HOW_TO_GET.get(spec.download, "Put the files the spec names there, or point the "
                         "spec's \"root\" at them.")
    where = (f"the data root comes from --data_dir, else ${DATA_DIR_ENV}, else "
             f"{default_data_dir()}" if spec.root is None else f"the spec's root is {root}")
    return DataNotFoundError(
        f"{spec.name} ({spec.path}): missing {', '.join(missing[:3])}"
        f"{' and more' if len(missing) > 3 else ''}.\n"
        + how.format(root=root, data_dir=resolve_data_dir(data_dir)) + f"\n({where}).")


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
        _fetch(url, archive, timeout, f"put users.dat, movies.dat and ratings.dat of "
                                      f"MovieLens-1M into {os.path.join(root, 'ml-1m')}/")
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


def _fetch(url, path, timeout, by_hand):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(path, "wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError) as e:
        raise DataNotFoundError(f"Could not download {url} ({e}). Without network access, "
                                f"{by_hand} by hand.") from e


def download_criteo(root, url=CRITEO_URL, timeout=60):
    """Downloads Criteo's Kaggle Display Advertising Challenge archive (about 4.3 GB) and
    puts its `train.txt` at `root/criteo/train.txt`; nothing is left under `root` unless
    the archive is complete.

    Returns:
        The path of the `criteo/` folder.
    """
    import tarfile

    os.makedirs(root, exist_ok=True)
    final = os.path.join(root, "criteo")
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        archive = os.path.join(tmp, "criteo.tar.gz")
        _fetch(url, archive, timeout, f"put Criteo's train.txt into {final}/")
        with tarfile.open(archive) as tar:
            member = next((m for m in tar.getmembers()
                           if os.path.basename(m.name) == "train.txt" and m.isfile()), None)
            if member is None:
                raise ValueError(f"{url}: the archive holds no train.txt")
            member.name = "train.txt"
            tar.extract(member, os.path.join(tmp, "criteo"), filter="data")
        os.makedirs(final, exist_ok=True)
        os.replace(os.path.join(tmp, "criteo", "train.txt"), os.path.join(final, "train.txt"))
    return final
