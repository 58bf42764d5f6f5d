"""Sharded, GZIP-compressed TFRecords of `tf.train.Example` per task and split, with a metadata
JSON, and the `tf.data` reader the training code uses.

Layout written by `build_tfrecords(data_dir, output_dir, protocol)`:

    <output_dir>/<protocol>/
        metadata.json                       schema, row counts, vocabularies, source md5s
        rating/{train,validation,test}-0000i-of-0000n.tfrecord.gz
        rating/movie_graph.npz              dense per-movie table (training ratings only)
        genre/{train,validation,test}-...
        genre/movie_graph.npz               dense per-movie table (the whole rating graph)

The folder is written under a temporary name and renamed when complete, so a failed build
leaves no partial folder; a build whose sources and options are unchanged is skipped.
"""

import hashlib
import json
import os

import numpy as np
import tensorflow as tf

from deepmix_tf.data import graph, locate, movielens, schema, splits
from deepmix_tf.files import staged_directory

FORMAT_VERSION = 1
PROTOCOLS = ("rel-movielens1m", "chronological", "random")
METADATA = "metadata.json"
MOVIE_GRAPH = "movie_graph"
# Size of the spectral part of each task's per-movie graph table, chosen on validation: the
# genre task gains most from a wider view of the whole rating graph (DeepMix genre, seed 42,
# validation micro/macro F1 at 32/64/128/192/256 dimensions: 0.777/0.701, 0.790/0.722,
# 0.815/0.786, 0.780/0.761, 0.779/0.765; BUILD.md). The rating task keeps 32 (see there).
SVD_DIMS = {"rating": 32, "genre": 128}


# ------------------------------------------------------------------------------- sources


def source_files(data_dir, protocol):
    """The files a protocol reads, or DataNotFoundError saying what to put where."""
    if protocol == "rel-movielens1m":
        root = locate.rel_movielens1m_dir(data_dir)
        return [os.path.join(root, f) for f in locate.REL_FILES]
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    root = locate.ml1m_dir(data_dir)
    return [os.path.join(root, f) for f in locate.ML1M_FILES]


def load_protocol(data_dir, protocol, seed):
    """Loads the rating and genre splits of a protocol from a data root.

    Returns:
        (rating_splits, genre_splits): `movielens.RatingSplits`, `movielens.GenreSplits`.
    """
    if protocol == "rel-movielens1m":
        root = locate.rel_movielens1m_dir(data_dir)
        return (movielens.load_rel_movielens1m_rating(root),
                movielens.load_rel_movielens1m_genre(root))
    source_files(data_dir, protocol)  # checks the protocol name
    root = locate.ml1m_dir(data_dir)
    users, movies, ratings = movielens.load_ml1m(root)
    for column in movielens.TEXT_COLUMNS:
        movies[column] = ""
    if protocol == "chronological":
        parts = splits.chronological_split(ratings)
    else:
        parts = splits.random_split(ratings, seed)
    rating = movielens.RatingSplits(users, movies, *parts)
    genre = movielens.GenreSplits(users, ratings, *splits.random_movie_split(movies, seed))
    return rating, genre


def rating_rows(ratings, users, movies):
    """Joins ratings with user and movie attributes: one row per rating, in rating order."""
    rows = ratings.merge(users, on="user_id", how="left", validate="many_to_one")
    rows = rows.merge(movies, on="movie_id", how="left", validate="many_to_one")
    rows["has_timestamp"] = rows["timestamp"].notna().astype(np.int64)
    rows["timestamp"] = rows["timestamp"].fillna(0).astype(np.int64)
    return rows


def genre_labels(genres):
    """'|'-joined genre strings -> float32 multi-hot (n, 18) in `movielens.GENRES` order."""
    index = {g: i for i, g in enumerate(movielens.GENRES)}
    out = np.zeros((len(genres), len(movielens.GENRES)), dtype=np.float32)
    for row, value in enumerate(genres):
        for g in value.split("|"):
            out[row, index[g]] = 1.0
    return out


# ------------------------------------------------------------------------------- writing


def _columns(task, rows):
    """The (name, dtype, per-row values) columns of a task's examples, label last."""
    columns = []
    for f in schema.features(task):
        values = rows[f.name].to_numpy()
        columns.append((f.name, f.dtype, values.astype(np.int64) if f.dtype == "int64"
                        else values.astype(str)))
    label = schema.LABELS[task]
    if task == "rating":
        columns.append((label.name, "float32", rows["rating"].to_numpy(np.float32)))
    else:
        columns.append((label.name, "float32", genre_labels(rows["genres"])))
    return columns


def serialize_examples(task, rows):
    """Yields one serialized `tf.train.Example` per row of a task's frame."""
    # One proto refilled per row: about 4x faster than building a new Example each time.
    example = tf.train.Example()
    slots = []
    for name, dtype, values in _columns(task, rows):
        feature = example.features.feature[name]
        if dtype == "int64":
            slot, values = feature.int64_list.value, values.tolist()
        elif dtype == "float32":
            slot, values = feature.float_list.value, values.tolist()
        else:
            slot, values = feature.bytes_list.value, [v.encode() for v in values]
        slots.append((slot, values))
    for i in range(len(rows)):
        for slot, values in slots:
            del slot[:]
            value = values[i]
            if isinstance(value, list):
                slot.extend(value)
            else:
                slot.append(value)
        yield example.SerializeToString(deterministic=True)


def _write_shards(task, rows, directory, split, num_shards):
    """Writes contiguous shards of the rows (reading them in file order gives the rows back)."""
    num_shards = max(1, min(num_shards, len(rows)))
    bounds = np.linspace(0, len(rows), num_shards + 1).astype(int)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    files = []
    for shard in range(num_shards):
        name = f"{split}-{shard:05d}-of-{num_shards:05d}.tfrecord.gz"
        with tf.io.TFRecordWriter(os.path.join(directory, name), options) as writer:
            for record in serialize_examples(task, rows.iloc[bounds[shard]:bounds[shard + 1]]):
                writer.write(record)
        files.append(f"{task}/{name}")
    return files


def _vocabularies(task, train_rows):
    vocabularies = {}
    for f in schema.features(task):
        if f.kind == schema.CATEGORICAL:
            values = schema.vocabulary_values(f, train_rows[f.name].tolist())
            vocabularies[f.name] = [v if isinstance(v, str) else int(v) for v in values]
    return vocabularies


def _fingerprint(sources, options):
    digest = hashlib.md5(json.dumps(options, sort_keys=True).encode())
    md5s = {path: locate.md5_of_file(path) for path in sources}
    # Paths relative to the data folder: the same files reached another way (a relative
    # path, a symlink, a moved copy) are the same build.
    root = os.path.commonpath([os.path.abspath(p) for p in sources])
    for path in sorted(md5s):
        digest.update(f"{os.path.relpath(os.path.abspath(path), root)}:{md5s[path]}".encode())
    return digest.hexdigest(), md5s


def svd_dims(svd_dim=None):
    """Per-task sizes of the graph table's spectral part: `SVD_DIMS` for None, the same size
    for both tasks for an int, or a dict naming every task."""
    if svd_dim is None:
        return dict(SVD_DIMS)
    if isinstance(svd_dim, dict):
        if sorted(svd_dim) != sorted(schema.TASKS):
            raise ValueError(f"svd_dim must name every task {list(schema.TASKS)}, got "
                             f"{sorted(svd_dim)}")
        dims = {task: svd_dim[task] for task in schema.TASKS}
    else:
        dims = {task: svd_dim for task in schema.TASKS}
    for task, dim in dims.items():
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"svd_dim of the {task} task must be a positive int, got {dim!r}")
    return dims


def _build_plan(data_dir, protocol, seed, num_shards, svd_dim):
    svd_dim = svd_dims(svd_dim)
    data_dir = locate.resolve_data_dir(data_dir)
    sources = source_files(data_dir, protocol)
    options = {"format_version": FORMAT_VERSION, "protocol": protocol, "seed": seed,
               "num_shards": num_shards, "svd_dim": svd_dim}
    fingerprint, md5s = _fingerprint(sources, options)
    return data_dir, sources, options, fingerprint, md5s


def _built_with(final, fingerprint):
    try:
        with open(os.path.join(final, METADATA)) as f:
            return json.load(f).get("fingerprint") == fingerprint
    except FileNotFoundError:
        return False


def up_to_date_build(data_dir, output_dir, protocol="rel-movielens1m", seed=42, num_shards=4,
                     svd_dim=None):
    """The `<output_dir>/<protocol>` folder when `build_tfrecords` with these arguments would
    not rebuild it, else None. Reads only: for processes that wait for another's build."""
    fingerprint = _build_plan(data_dir, protocol, seed, num_shards, svd_dim)[3]
    final = os.path.join(output_dir, protocol)
    return final if _built_with(final, fingerprint) else None


def build_tfrecords(data_dir, output_dir, protocol="rel-movielens1m", seed=42, num_shards=4,
                    svd_dim=None, force=False, log=print):
    """Builds the TFRecords of both tasks for one protocol, unless an identical build exists.

    Args:
        data_dir: str or None. The data root (see `locate.resolve_data_dir`).
        output_dir: str. Where `<protocol>/` is written.
        protocol: str. "rel-movielens1m" (the paper's splits), "chronological" (per-user
            80/10/10 by time) or "random" (seeded 80/10/10), the last two from raw ml-1m.
        seed: int. Seed of the random splits and of the graph SVD.
        num_shards: int. Shards per training split (validation/test get at most as many).
        svd_dim: None, int or dict task -> int. Size of the spectral part of each task's
            per-movie graph table; None for `SVD_DIMS`.
        force: bool. Rebuild even when sources and options are unchanged.
        log: callable taking a str, for progress.

    Returns:
        The path of the `<protocol>/` folder.
    """
    data_dir, sources, options, fingerprint, md5s = _build_plan(data_dir, protocol, seed,
                                                                num_shards, svd_dim)
    svd_dim = options["svd_dim"]
    final = os.path.join(output_dir, protocol)
    if not force and _built_with(final, fingerprint):
        log(f"{final} is up to date (sources and options unchanged); not rebuilt")
        return final

    rating, genre = load_protocol(data_dir, protocol, seed)
    with staged_directory(final) as tmp:
        tasks = {}
        movie_ids = rating.movies["movie_id"].to_numpy()
        graph_sources = {
            # The rating task may only learn from training ratings.
            "rating": (rating.train, rating.users),
            "genre": (genre.ratings, genre.users),
        }
        for task in schema.TASKS:
            os.makedirs(os.path.join(tmp, task))
            if task == "rating":
                frames = {name: rating_rows(rating.split(name), rating.users, rating.movies)
                          for name in movielens.SPLITS}
            else:
                frames = {name: genre.split(name) for name in movielens.SPLITS}
            table, names = graph.movie_graph_features(*graph_sources[task], movie_ids,
                                                      svd_dim=svd_dim[task], seed=seed)
            np.savez(os.path.join(tmp, task, f"{MOVIE_GRAPH}.npz"), movie_id=movie_ids,
                     values=table, names=np.asarray(names))
            split_meta = {}
            for name, rows in frames.items():
                log(f"writing {protocol}/{task}/{name}: {len(rows):,} examples")
                shards = num_shards if name == "train" else max(1, num_shards // 2)
                split_meta[name] = {"examples": len(rows),
                                    "files": _write_shards(task, rows, os.path.join(tmp, task),
                                                           name, shards)}
            tasks[task] = {
                **schema.to_dict(task),
                "label_mean": (float(frames["train"]["rating"].mean()) if task == "rating"
                               else genre_labels(frames["train"]["genres"]).mean(0).tolist()),
                "splits": split_meta,
                "vocabularies": _vocabularies(task, frames["train"]),
                "dense_tables": {MOVIE_GRAPH: {
                    "file": f"{task}/{MOVIE_GRAPH}.npz", "key": "movie_id",
                    "dim": int(table.shape[1]),
                    "source": "training ratings" if task == "rating" else "all ratings"}},
            }
        metadata = {**options, "fingerprint": fingerprint, "genres": list(movielens.GENRES),
                    "sources": {os.path.relpath(p, data_dir): md5s[p] for p in sources},
                    "tasks": tasks}
        with open(os.path.join(tmp, METADATA), "w") as f:
            json.dump(metadata, f, indent=1)
    log(f"wrote {final}")
    return final


# ------------------------------------------------------------------------------- reading


def read_metadata(dataset_dir):
    path = os.path.join(dataset_dir, METADATA)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} not found: build the TFRecords first with "
            f"python -m experiments.build_tfrecords --output_dir {os.path.dirname(dataset_dir)}"
        ) from None


def load_dense_table(dataset_dir, task, name=MOVIE_GRAPH, with_names=False):
    """A dense per-movie table of a build: (movie_id int64 (n,), values float32 (n, d)),
    and its d column names as a list of str when `with_names`."""
    meta = read_metadata(dataset_dir)["tasks"][task]["dense_tables"][name]
    with np.load(os.path.join(dataset_dir, meta["file"])) as data:
        if with_names:
            return data["movie_id"], data["values"], [str(n) for n in data["names"]]
        return data["movie_id"], data["values"]


def feature_spec(task):
    """The `tf.io.parse_example` spec of a task's examples (features and label)."""
    dtypes = {"int64": tf.int64, "string": tf.string, "float32": tf.float32}
    spec = {f.name: tf.io.FixedLenFeature([], dtypes[f.dtype]) for f in schema.features(task)}
    label = schema.LABELS[task]
    spec[label.name] = tf.io.FixedLenFeature(list(label.shape), tf.float32)
    return spec


def make_dataset(dataset_dir, task, split, batch_size, *, shuffle=False, seed=0, repeat=False,
                 deterministic=True, cache=False, in_memory=False, drop_remainder=False,
                 input_context=None, transform=None):
    """A `tf.data.Dataset` of `(features, label)` batches read from a build's TFRecords.

    Args:
        dataset_dir: str. A `<output_dir>/<protocol>` folder written by `build_tfrecords`.
        task: str. "rating" or "genre".
        split: str. "train", "validation" or "test".
        batch_size: int. Examples per batch (per replica batch when `input_context` is given).
        shuffle: bool. Shuffle files and examples (with `seed`); the whole split is the
            shuffle buffer when `cache` is on, else 100,000 examples.
        seed: int. Shuffle seed.
        repeat: bool. Repeat forever.
        deterministic: bool. Keep a fixed element order for a fixed seed (slightly slower).
        cache: bool. Keep the serialized records in memory after the first pass.
        in_memory: bool. Read and parse the split once, then serve batches by gathering
            shuffled indices from in-memory tensors: several times faster than re-parsing
            records every epoch, for splits that fit in memory (all of ML-1M does).
        drop_remainder: bool. Drop the last partial batch.
        input_context: `tf.distribute.InputContext` or None. Shards by file across input
            pipelines (multi-worker training).
        transform: callable or None. Maps a features dict to another (for example a
            preprocessing model). With `in_memory` it runs once over the whole split,
            otherwise on every batch.

    Returns:
        A dataset of `(features dict of name -> tensor (batch,), label)`, prefetched.
    """
    meta = read_metadata(dataset_dir)["tasks"][task]
    info = meta["splits"][split]
    files = [os.path.join(dataset_dir, f) for f in info["files"]]
    if in_memory:
        return _in_memory_dataset(dataset_dir, task, split, batch_size, shuffle, seed, repeat,
                                  drop_remainder, input_context, transform)
    ds = tf.data.Dataset.from_tensor_slices(files)
    if input_context is not None and input_context.num_input_pipelines > 1:
        if len(files) < input_context.num_input_pipelines:
            raise ValueError(f"{len(files)} files cannot be sharded across "
                             f"{input_context.num_input_pipelines} workers; rebuild with more "
                             "shards (--num_shards)")
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if shuffle and not cache:
        ds = ds.shuffle(len(files), seed=seed)
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
        cycle_length=len(files), block_length=64 if shuffle else 1 << 30,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if cache:
        ds = ds.cache()
    if shuffle:
        buffer = info["examples"] if cache else 100_000
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    spec = feature_spec(task)
    label = schema.LABELS[task].name

    def parse(records):
        parsed = tf.io.parse_example(records, spec)
        y = parsed.pop(label)
        return (transform(parsed) if transform else parsed), y

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _in_memory_dataset(dataset_dir, task, split, batch_size, shuffle, seed, repeat,
                       drop_remainder, input_context, transform):
    arrays = read_examples(dataset_dir, task, split, input_context=input_context)
    label = schema.LABELS[task].name
    labels = tf.constant(arrays.pop(label))
    features = {name: tf.constant(value) for name, value in arrays.items()}
    tensors = dict(transform(features) if transform else features)
    tensors[label] = labels
    n = int(labels.shape[0])
    num_batches = n // batch_size if drop_remainder else -(-n // batch_size)

    def epoch_indices(epoch_seed):
        # One permutation op per epoch: far cheaper than shuffling n scalar elements.
        order = tf.range(n, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(
                order, seed=tf.stack([tf.constant(seed, tf.int64), epoch_seed]))
        return tf.data.Dataset.range(num_batches).map(
            lambda i: order[i * batch_size:tf.minimum((i + 1) * batch_size, n)])

    # A new epoch seed each time the dataset is iterated (each Keras epoch), reproducibly.
    ds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = ds if repeat else ds.take(1)
    ds = ds.flat_map(epoch_indices)

    def gather(index):
        features = {name: tf.gather(t, index) for name, t in tensors.items()}
        return features, features.pop(label)

    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    if not repeat:
        # flat_map hides the length; Keras uses it for progress bars and epoch ends.
        ds = ds.apply(tf.data.experimental.assert_cardinality(num_batches))
    return ds.prefetch(tf.data.AUTOTUNE)


def read_examples(dataset_dir, task, split, input_context=None):
    """All examples of a split as numpy arrays in file order (for tests and small splits)."""
    out = {}
    for features, label in make_dataset(dataset_dir, task, split, batch_size=65536,
                                        input_context=input_context):
        features[schema.LABELS[task].name] = label
        for name, value in features.items():
            out.setdefault(name, []).append(value.numpy())
    return {name: np.concatenate(parts) for name, parts in out.items()}
