"""Sharded, GZIP-compressed TFRecords of `tf.train.Example` per split of a dataset spec, with
a metadata JSON, and the `tf.data` reader the training code uses.

Layout written by `build_tfrecords(spec, data_dir, output_dir)`:

    <output_dir>/<spec name>/
        metadata.json                       task, features (vocabularies, statistics),
                                            splits, dense tables, the spec, source md5s
        {train,validation,test}-0000i-of-0000n.tfrecord.gz
        <dense table>.npz                   each dense per-key table the spec declares

The folder is written under a temporary name and renamed when complete, so a failed build
leaves no partial folder; a build whose spec, sources and options are unchanged is skipped.
"""

import hashlib
import json
import os

import numpy as np
import tensorflow as tf

from deepmix_tf import tasks as tasks_lib
from deepmix_tf.data import graph, locate, readers, splits
from deepmix_tf.data.errors import DataFormatError
from deepmix_tf.data.spec import load_spec
from deepmix_tf.files import staged_directory

FORMAT_VERSION = 2
METADATA = "metadata.json"
_TF_DTYPES = {"int64": tf.int64, "string": tf.string, "float32": tf.float32}


# ------------------------------------------------------------------------------- sources


def _spec(spec):
    return load_spec(spec) if isinstance(spec, str) else spec


def source_files(spec, data_dir=None):
    """The files a spec reads, or DataNotFoundError saying what to put where."""
    files = spec.source_files(data_dir)
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise locate.missing_data_error(spec, missing, data_dir)
    return files


def load_examples(spec, data_dir=None):
    """Reads, checks, joins and splits a spec's tables.

    Returns:
        ({split: joined example rows}, {table: rows}).
    """
    source_files(spec, data_dir)
    frames = readers.read_tables(spec, spec.data_root(data_dir))
    rows = splits.split_examples(readers.join_examples(spec, frames), spec.split)
    for name, part in rows.items():
        if not len(part):
            raise DataFormatError(spec.path, None, "split",
                                  f"the {name} split of {spec.name!r} has no examples")
    return rows, frames


# ------------------------------------------------------------------------------- features


def vocabulary(feature, column, train_values):
    """The vocabulary of a categorical or multi-hot feature from its training values:
    prefixes where declared, the column's missing value left out (it maps to OOV), values
    seen fewer than `min_count` times dropped, the `max_size` most frequent kept (ties by
    value), in sorted order."""
    options = feature.vocabulary
    if options["values"] is not None:
        return list(options["values"])
    values = np.asarray(train_values, dtype=object if column.dtype == "string" else np.int64)
    if feature.type == "multi_hot":
        values = np.asarray([item for v in values if v for item in v.split(feature.separator)],
                            dtype=object)
    if feature.prefix:
        values = np.asarray([v[:feature.prefix] for v in values], dtype=object)
    if column.optional:
        values = values[values != column.fill]
    if not len(values):
        return []
    unique, counts = np.unique(values, return_counts=True)
    keep = counts >= options["min_count"]
    unique, counts = unique[keep], counts[keep]
    if options["max_size"] is not None and len(unique) > options["max_size"]:
        top = np.lexsort((np.arange(len(unique)), -counts))[:options["max_size"]]
        unique = unique[np.sort(top)]
    return [v if isinstance(v, str) else int(v) for v in unique.tolist()]


def _numeric(feature, values):
    """A numeric feature's values after its clip and transform steps (without
    standardisation, which the model applies from the stored statistics)."""
    x = np.asarray(values, np.float64)
    if feature.clip is not None:
        low, high = feature.clip
        x = np.clip(x, -np.inf if low is None else low, np.inf if high is None else high)
    if "log1p" in feature.transform:
        if (x <= -1).any():
            raise ValueError(f"feature {feature.name!r}: log1p of values <= -1; clip them "
                             "first (\"clip\": [0, null])")
        x = np.log1p(x)
    return x


def feature_metadata(spec, train):
    """What the model needs of each feature, from the training split: one dict each."""
    columns = spec.example_columns()
    out = []
    for f in spec.features:
        _, column = columns[f.name]
        entry = {"name": f.name, "type": f.type, "dtype": column.dtype, "enabled": f.enabled,
                 "doc": f.doc, "prefix": f.prefix, "missing": column.fill if column.optional
                 else None}
        if f.type == "numeric":
            x = _numeric(f, train[f.name].to_numpy())
            entry.update(clip=list(f.clip) if f.clip else None, transform=list(f.transform),
                         mean=float(x.mean()), std=float(x.std()))
        else:
            entry.update(num_oov_indices=f.vocabulary["num_oov_indices"],
                         hash_buckets=f.vocabulary["hash_buckets"], separator=f.separator)
            if f.vocabulary["hash_buckets"] is None:
                entry["vocabulary"] = vocabulary(f, column, train[f.name].to_numpy())
                if f.enabled and not entry["vocabulary"]:
                    raise DataFormatError(
                        spec.path, None, f"features.{f.name}",
                        f"feature {f.name!r} has no value in the training split of "
                        f"{spec.name!r}: leave it out of the spec, set \"enabled\": false, or "
                        "give it hash_buckets")
        out.append(entry)
    return out


def written_columns(spec):
    """The columns each example carries: every feature, then the dense tables' keys."""
    names = [f.name for f in spec.features]
    names += [t.key for t in spec.dense_tables if t.key not in names]
    columns = spec.example_columns()
    return [(name, columns[name][1].dtype) for name in names]


# ------------------------------------------------------------------------------- writing


def serialize_examples(columns, labels):
    """Yields one serialized `tf.train.Example` per row.

    Args:
        columns: list of (name, dtype, numpy values) of the features.
        labels: (name, float32 array (n,) or (n, k)) of the label.
    """
    # One proto refilled per row: about 4x faster than building a new Example each time.
    example = tf.train.Example()
    slots = []
    for name, dtype, values in columns + [(labels[0], "float32", labels[1])]:
        feature = example.features.feature[name]
        if dtype == "int64":
            slot, values = feature.int64_list.value, np.asarray(values, np.int64).tolist()
        elif dtype == "float32":
            slot, values = feature.float_list.value, np.asarray(values, np.float32).tolist()
        else:
            slot, values = feature.bytes_list.value, [str(v).encode() for v in values]
        slots.append((slot, values))
    for i in range(len(labels[1])):
        for slot, values in slots:
            del slot[:]
            value = values[i]
            if isinstance(value, list):
                slot.extend(value)
            else:
                slot.append(value)
        yield example.SerializeToString(deterministic=True)


def _write_shards(spec, task, rows, directory, split, num_shards):
    """Writes contiguous shards of the rows (reading them in file order gives the rows back)."""
    num_shards = max(1, min(num_shards, len(rows)))
    bounds = np.linspace(0, len(rows), num_shards + 1).astype(int)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    labels = task.encode_labels(rows[task.label].to_numpy())
    columns = [(name, dtype, rows[name].to_numpy()) for name, dtype in written_columns(spec)]
    files = []
    for shard in range(num_shards):
        part = slice(bounds[shard], bounds[shard + 1])
        name = f"{split}-{shard:05d}-of-{num_shards:05d}.tfrecord.gz"
        with tf.io.TFRecordWriter(os.path.join(directory, name), options) as writer:
            for record in serialize_examples([(n, d, v[part]) for n, d, v in columns],
                                             (task.label, labels[part])):
                writer.write(record)
        files.append(name)
    return files


def _dense_table(spec, table, rows, frames, svd_dim=None):
    """The values of one derived dense table: (ids, float32 (n, d), column names)."""
    d = table.derived
    if d["splits"] == "train":
        if d["interactions"] != spec.examples["table"]:
            raise ValueError(f"{spec.path}: a dense table from the training split must read "
                             "the examples table")
        interactions = rows["train"]
    else:
        interactions = frames[d["interactions"]]
    items = frames[d["items"]]
    ids = items[spec.tables[d["items"]].key].to_numpy(np.int64)
    values, names = graph.interaction_graph_features(
        interactions, ids, item=d["item"], user=d["user"], value=d["value"],
        values=d["values"], users=frames[d["users"]] if d["users"] else None,
        user_shares=d["user_shares"], svd_dim=svd_dim or d["svd_dim"], seed=d["seed"])
    return ids, values, names


def _fingerprint(spec, sources, options):
    digest = hashlib.md5(json.dumps({"spec": spec.raw, "options": options},
                                    sort_keys=True).encode())
    md5s = {path: locate.md5_of_file(path) for path in sources}
    # Paths relative to the data folder: the same files reached another way (a relative
    # path, a symlink, a moved copy) are the same build.
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in sources])
    for path in sorted(md5s):
        digest.update(f"{os.path.relpath(os.path.abspath(path), root)}:{md5s[path]}".encode())
    return digest.hexdigest(), md5s, root


def _build_plan(spec, data_dir, num_shards, svd_dim):
    sources = source_files(spec, data_dir)
    options = {"format_version": FORMAT_VERSION, "num_shards": num_shards, "svd_dim": svd_dim}
    fingerprint, md5s, root = _fingerprint(spec, sources, options)
    return sources, options, fingerprint, md5s, root


def _built_with(final, fingerprint):
    try:
        with open(os.path.join(final, METADATA)) as f:
            return json.load(f).get("fingerprint") == fingerprint
    except FileNotFoundError:
        return False


def build_dir(spec, output_dir):
    """Where `build_tfrecords` writes a spec's build."""
    return os.path.join(output_dir, _spec(spec).name)


def up_to_date_build(spec, data_dir, output_dir, num_shards=4, svd_dim=None):
    """The build folder when `build_tfrecords` with these arguments would not rebuild it,
    else None. Reads only: for processes that wait for another's build."""
    spec = _spec(spec)
    fingerprint = _build_plan(spec, data_dir, num_shards, svd_dim)[2]
    final = build_dir(spec, output_dir)
    return final if _built_with(final, fingerprint) else None


def build_tfrecords(spec, data_dir=None, output_dir="artifacts/tfrecords", num_shards=4,
                    svd_dim=None, force=False, log=print):
    """Builds the TFRecords of a dataset spec, unless an identical build exists.

    Args:
        spec: a `DatasetSpec`, a spec file, or a shipped spec's name.
        data_dir: str or None. The data root of specs without a `root`
            (see `locate.resolve_data_dir`).
        output_dir: str. Where `<spec name>/` is written.
        num_shards: int. Shards of the training split (validation/test get half as many).
        svd_dim: int or None. Overrides the spectral size of every interaction-graph table.
        force: bool. Rebuild even when spec, sources and options are unchanged.
        log: callable taking a str, for progress.

    Returns:
        The path of the build folder.
    """
    spec = _spec(spec)
    if svd_dim is not None and (isinstance(svd_dim, bool) or not isinstance(svd_dim, int)
                                or svd_dim < 1):
        raise ValueError(f"svd_dim must be a positive int, got {svd_dim!r}")
    sources, options, fingerprint, md5s, root = _build_plan(spec, data_dir, num_shards, svd_dim)
    final = build_dir(spec, output_dir)
    if not force and _built_with(final, fingerprint):
        log(f"{final} is up to date (spec, sources and options unchanged); not rebuilt")
        return final

    rows, frames = load_examples(spec, data_dir)
    task_info = dict(spec.task)
    task = tasks_lib.make_task(task_info)
    task_info["stats"] = task.label_stats(task.encode_labels(rows["train"][task.label].to_numpy()))
    features = feature_metadata(spec, rows["train"])
    with staged_directory(final) as tmp:
        dense = {}
        for table in spec.dense_tables:
            ids, values, names = _dense_table(spec, table, rows, frames, svd_dim)
            np.savez(os.path.join(tmp, f"{table.name}.npz"), ids=ids, values=values,
                     names=np.asarray(names))
            dense[table.name] = {"file": f"{table.name}.npz", "key": table.key,
                                 "dim": int(values.shape[1]), "rows": int(len(ids)),
                                 "derived": table.derived}
        split_meta = {}
        for name, part in rows.items():
            log(f"writing {spec.name}/{name}: {len(part):,} examples")
            shards = num_shards if name == "train" else max(1, num_shards // 2)
            split_meta[name] = {"examples": len(part),
                                "files": _write_shards(spec, task, part, tmp, name, shards)}
        metadata = {
            **options, "fingerprint": fingerprint, "dataset": spec.name,
            "protocol": spec.protocol, "spec": spec.raw, "spec_path": spec.path,
            "task": task_info, "features": features,
            "columns": [{"name": n, "dtype": d} for n, d in written_columns(spec)],
            "label": {"name": task.label, "shape": task.label_shape()},
            "splits": split_meta, "dense_tables": dense,
            "sources": {os.path.relpath(p, root): md5s[p] for p in sources},
        }
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
            f"{path} not found: build the TFRecords first with python -m "
            f"experiments.build_tfrecords --dataset <spec> --output_dir "
            f"{os.path.dirname(dataset_dir)}"
        ) from None


def load_dense_table(dataset_dir, name=None, with_names=False):
    """A dense per-key table of a build (its only one when `name` is None): (ids int64 (n,),
    values float32 (n, d)), and its d column names as a list of str when `with_names`."""
    tables = read_metadata(dataset_dir)["dense_tables"]
    if name is None:
        if len(tables) != 1:
            raise ValueError(f"{dataset_dir} has dense tables {sorted(tables)}; name one")
        (name,) = tables
    meta = tables[name]
    with np.load(os.path.join(dataset_dir, meta["file"])) as data:
        if with_names:
            return data["ids"], data["values"], [str(n) for n in data["names"]]
        return data["ids"], data["values"]


def feature_spec(meta):
    """The `tf.io.parse_example` spec of a build's examples (features and label)."""
    spec = {c["name"]: tf.io.FixedLenFeature([], _TF_DTYPES[c["dtype"]])
            for c in meta["columns"]}
    spec[meta["label"]["name"]] = tf.io.FixedLenFeature(meta["label"]["shape"], tf.float32)
    return spec


def make_dataset(dataset_dir, split, batch_size, *, shuffle=False, seed=0, repeat=False,
                 deterministic=True, cache=False, in_memory=False, drop_remainder=False,
                 input_context=None, transform=None):
    """A `tf.data.Dataset` of `(features, label)` batches read from a build's TFRecords.

    Args:
        dataset_dir: str. A build folder written by `build_tfrecords`.
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
    meta = read_metadata(dataset_dir)
    info = meta["splits"][split]
    files = [os.path.join(dataset_dir, f) for f in info["files"]]
    if in_memory:
        return _in_memory_dataset(dataset_dir, split, batch_size, shuffle, seed, repeat,
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
    spec = feature_spec(meta)
    label = meta["label"]["name"]

    def parse(records):
        parsed = tf.io.parse_example(records, spec)
        y = parsed.pop(label)
        return (transform(parsed) if transform else parsed), y

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _in_memory_dataset(dataset_dir, split, batch_size, shuffle, seed, repeat,
                       drop_remainder, input_context, transform):
    arrays = read_examples(dataset_dir, split, input_context=input_context)
    label = read_metadata(dataset_dir)["label"]["name"]
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


def read_examples(dataset_dir, split, input_context=None):
    """All examples of a split as numpy arrays in file order (for tests and small splits)."""
    out = {}
    label_name = read_metadata(dataset_dir)["label"]["name"]
    for features, label in make_dataset(dataset_dir, split, batch_size=65536,
                                        input_context=input_context):
        features[label_name] = label
        for name, value in features.items():
            out.setdefault(name, []).append(value.numpy())
    return {name: np.concatenate(parts) for name, parts in out.items()}
