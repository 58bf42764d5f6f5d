"""Sharded TFRecords (GZIP by default) of columnar blocks (`blocks`: one record holds a block
of rows) per split of a dataset spec, with a metadata JSON, and the `tf.data` reader the
training code uses.

Specs with one examples table, no joins, no dense tables and a "files" or "ordered" split are
built by `stream.build_streaming`: chunk by chunk, in memory that does not grow with the rows;
the others are read whole (`load_examples`), which joins, checks keys and splits randomly or
per user.

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
from deepmix_tf.data import blocks, graph, locate, readers, splits
from deepmix_tf.data.errors import DataFormatError
from deepmix_tf.data.spec import load_spec
from deepmix_tf.files import staged_directory

FORMAT_VERSION = 3
METADATA = "metadata.json"
CATALOGUE = "items.parquet"  # the item table of specs with a "recommend" section
BLOCK_ROWS = 4096  # rows per record
COMPRESSIONS = ("GZIP", "")


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
    if options["identity"] is not None:
        return None  # ids are rows: nothing to count
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
    return vocabulary_from_counts(feature, unique, counts)


def vocabulary_from_counts(feature, unique, counts):
    """`vocabulary` from each distinct training value (sorted) and its count."""
    options = feature.vocabulary
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

    def moments(f):
        x = _numeric(f, train[f.name].to_numpy())
        return float(x.mean()), float(x.std())

    return feature_entries(spec, moments,
                           lambda f, column: vocabulary(f, column, train[f.name].to_numpy()))


def feature_entries(spec, moments, vocabulary_of):
    """`feature_metadata` from `moments(feature)` -> (mean, std) of a numeric feature's
    training values and `vocabulary_of(feature, column)` -> a counted vocabulary."""
    columns = spec.example_columns()
    out = []
    for f in spec.features:
        _, column = columns[f.name]
        entry = {"name": f.name, "type": f.type, "dtype": column.dtype, "enabled": f.enabled,
                 "doc": f.doc, "prefix": f.prefix, "missing": column.fill if column.optional
                 else None}
        if f.type == "numeric":
            mean, std = moments(f)
            entry.update(clip=list(f.clip) if f.clip else None, transform=list(f.transform),
                         mean=mean, std=std)
        else:
            entry.update(num_oov_indices=f.vocabulary["num_oov_indices"],
                         hash_buckets=f.vocabulary["hash_buckets"], separator=f.separator,
                         identity=f.vocabulary["identity"], pooling=f.pooling)
            if f.vocabulary["values"] is not None:
                entry["vocabulary"] = check_vocabulary(spec, f, list(f.vocabulary["values"]))
            elif f.vocabulary["hash_buckets"] is None and f.vocabulary["identity"] is None:
                entry["vocabulary"] = check_vocabulary(spec, f, vocabulary_of(f, column))
        out.append(entry)
    return out


def check_vocabulary(spec, feature, values):
    if feature.enabled and not values:
        raise DataFormatError(
            spec.path, None, f"features.{feature.name}",
            f"feature {feature.name!r} has no value in the training split of {spec.name!r}: "
            "leave it out of the spec, set \"enabled\": false, or give it hash_buckets")
    return values


def written_columns(spec):
    """The columns each example carries: every feature, then the dense tables' keys."""
    names = [f.name for f in spec.features]
    names += [t.key for t in spec.dense_tables if t.key not in names]
    columns = spec.example_columns()
    return [(name, columns[name][1].dtype) for name in names]


def column_metadata(spec, bag_lengths):
    """`metadata["columns"]`: name, dtype, and the padded `length` of int64_list bags."""
    return [{"name": n, "dtype": d, **({"length": int(bag_lengths[n])}
                                       if d == "int64_list" else {})}
            for n, d in written_columns(spec)]


def block_columns(spec, frame, bag_lengths):
    """A DataFrame's written columns in `blocks.encode_block`'s form."""
    out = []
    for name, dtype in written_columns(spec):
        values = frame[name].to_numpy()
        if dtype == "string":
            values = blocks.string_buffers(values)
        elif dtype == "int64_list":
            values = blocks.pad_bags(values, bag_lengths[name])
        out.append((name, dtype, values))
    return out


# ------------------------------------------------------------------------------- writing


def shard_name(split, shard, num_shards, compression):
    return (f"{split}-{shard:05d}-of-{num_shards:05d}.tfrecord"
            + (".gz" if compression == "GZIP" else ""))


def write_records(path, records, compression):
    # GZIP level 1: about 4x faster to write than the default level 6, files 10% larger.
    options = tf.io.TFRecordOptions(compression_type=compression, compression_level=1)
    with tf.io.TFRecordWriter(path, options) as w:
        for record in records:
            w.write(record)


def _write_shards(spec, task, rows, directory, split, num_shards, bag_lengths, options):
    """Writes contiguous shards of the rows (reading them in file order gives the rows back)."""
    num_shards = max(1, min(num_shards, len(rows)))
    bounds = np.linspace(0, len(rows), num_shards + 1).astype(int)
    labels = task.encode_labels(rows[task.label].to_numpy())
    columns = block_columns(spec, rows, bag_lengths)
    files = []
    for shard in range(num_shards):
        start, stop = bounds[shard], bounds[shard + 1]
        name = shard_name(split, shard, num_shards, options["compression"])
        write_records(os.path.join(directory, name), blocks.encode_blocks(
            [(n, d, blocks.slice_column(d, v, start, stop)) for n, d, v in columns],
            (task.label, labels[start:stop]), options["block_rows"]), options["compression"])
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


def _build_plan(spec, data_dir, num_shards, svd_dim, compression="GZIP",
                block_rows=BLOCK_ROWS):
    sources = source_files(spec, data_dir)
    options = {"format_version": FORMAT_VERSION, "num_shards": num_shards, "svd_dim": svd_dim,
               "compression": compression, "block_rows": block_rows}
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


def up_to_date_build(spec, data_dir, output_dir, num_shards=4, svd_dim=None,
                     compression="GZIP", block_rows=BLOCK_ROWS):
    """The build folder when `build_tfrecords` with these arguments would not rebuild it,
    else None. Reads only: for processes that wait for another's build."""
    spec = _spec(spec)
    fingerprint = _build_plan(spec, data_dir, num_shards, svd_dim, compression,
                              block_rows)[2]
    final = build_dir(spec, output_dir)
    return final if _built_with(final, fingerprint) else None


def build_tfrecords(spec, data_dir=None, output_dir="artifacts/tfrecords", num_shards=4,
                    svd_dim=None, force=False, log=print, compression="GZIP",
                    block_rows=BLOCK_ROWS, streaming="auto"):
    """Builds the TFRecords of a dataset spec, unless an identical build exists.

    Args:
        spec: a `DatasetSpec`, a spec file, or a shipped spec's name.
        data_dir: str or None. The data root of specs without a `root`
            (see `locate.resolve_data_dir`).
        output_dir: str. Where `<spec name>/` is written.
        num_shards: int. Shards of the training split (validation/test get half as many).
            A streaming build writes this many pieces of each file, in parallel.
        svd_dim: int or None. Overrides the spectral size of every interaction-graph table.
        force: bool. Rebuild even when spec, sources and options are unchanged.
        log: callable taking a str, for progress.
        compression: "GZIP" or "" (none: larger files, faster to write and read).
        block_rows: int. Rows per record.
        streaming: "auto" (stream the specs `stream.can_stream` accepts), True (the same,
            and an error for the others) or False (read whole tables).

    Returns:
        The path of the build folder.
    """
    spec = _spec(spec)
    if svd_dim is not None and (isinstance(svd_dim, bool) or not isinstance(svd_dim, int)
                                or svd_dim < 1):
        raise ValueError(f"svd_dim must be a positive int, got {svd_dim!r}")
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    if isinstance(block_rows, bool) or not isinstance(block_rows, int) or block_rows < 1:
        raise ValueError(f"block_rows must be a positive int, got {block_rows!r}")
    sources, options, fingerprint, md5s, root = _build_plan(spec, data_dir, num_shards, svd_dim,
                                                            compression, block_rows)
    final = build_dir(spec, output_dir)
    if not force and _built_with(final, fingerprint):
        log(f"{final} is up to date (spec, sources and options unchanged); not rebuilt")
        return final
    from deepmix_tf.data import stream

    reason = stream.why_not_streaming(spec)
    if streaming is True and reason:
        raise ValueError(f"{spec.path}: cannot stream this spec: {reason}")
    if streaming and not reason:
        return stream.build_streaming(spec, data_dir, final, options, fingerprint,
                                      {os.path.relpath(p, root): md5s[p] for p in sources},
                                      log)

    rows, frames = load_examples(spec, data_dir)
    task_info = dict(spec.task)
    task = tasks_lib.make_task(task_info)
    task_info["stats"] = task.label_stats(task.encode_labels(rows["train"][task.label].to_numpy()))
    features = feature_metadata(spec, rows["train"])
    bag_lengths = {name: max(1, max((len(v) for part in rows.values() for v in part[name]),
                                    default=1))
                   for name, dtype in written_columns(spec) if dtype == "int64_list"}
    with staged_directory(final) as tmp:
        dense = {}
        for table in spec.dense_tables:
            ids, values, names = _dense_table(spec, table, rows, frames, svd_dim)
            np.savez(os.path.join(tmp, f"{table.name}.npz"), ids=ids, values=values,
                     names=np.asarray(names))
            dense[table.name] = {"file": f"{table.name}.npz", "key": table.key,
                                 "dim": int(values.shape[1]), "rows": int(len(ids)),
                                 "derived": table.derived}
        items = None
        if spec.recommend:
            items = write_catalogue(spec, frames[spec.recommend["items"]],
                                    os.path.join(tmp, CATALOGUE))
        split_meta = {}
        for name, part in rows.items():
            log(f"writing {spec.name}/{name}: {len(part):,} examples")
            shards = num_shards if name == "train" else max(1, num_shards // 2)
            split_meta[name] = {"examples": len(part),
                                "files": _write_shards(spec, task, part, tmp, name, shards,
                                                       bag_lengths, options)}
        metadata = {
            **options, "fingerprint": fingerprint, "dataset": spec.name,
            "protocol": spec.protocol, "spec": spec.raw, "spec_path": spec.path,
            "task": task_info, "features": features,
            "columns": column_metadata(spec, bag_lengths),
            "label": {"name": task.label, "shape": task.label_shape()},
            "splits": split_meta, "dense_tables": dense, "items": items,
            "sources": {os.path.relpath(p, root): md5s[p] for p in sources},
        }
        with open(os.path.join(tmp, METADATA), "w") as f:
            json.dump(metadata, f, indent=1)
    log(f"wrote {final}")
    return final


def write_catalogue(spec, frame, path):
    """Writes the item table of `spec.recommend` (its declared columns, one row per item) to
    a Parquet file, for the export's `recommend` signature; returns `metadata["items"]`."""
    table = spec.tables[spec.recommend["items"]]
    columns = [c.name for c in table.columns]
    frame = frame[columns].reset_index(drop=True)
    frame.to_parquet(path, index=False)
    return {"file": os.path.basename(path), "table": table.name,
            "key": spec.recommend["key"], "user": spec.recommend["user"],
            "relevant_at_least": spec.recommend["relevant_at_least"],
            "rows": int(len(frame)), "columns": columns}


def load_catalogue(dataset_dir, meta=None):
    """The item catalogue of a build (`write_catalogue`) as a DataFrame, in item order."""
    import pandas as pd

    meta = meta or read_metadata(dataset_dir)
    if not meta.get("items"):
        raise ValueError(f"{dataset_dir}: the build has no item catalogue; its spec "
                         f"({meta.get('spec_path')}) needs a \"recommend\" section "
                         f"(BUILD.md, \"Dataset specs\"), then a rebuild")
    return pd.read_parquet(os.path.join(dataset_dir, meta["items"]["file"]))


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


def _check_format(dataset_dir, meta):
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{dataset_dir} was built with format {meta.get('format_version')}; "
                         f"this version reads format {FORMAT_VERSION}: rebuild it "
                         "(python -m experiments.build_tfrecords)")


def _files(dataset_dir, meta, split, input_context):
    files = [os.path.join(dataset_dir, f) for f in meta["splits"][split]["files"]]
    if input_context is not None and input_context.num_input_pipelines > 1:
        if len(files) < input_context.num_input_pipelines:
            raise ValueError(f"{len(files)} files cannot be sharded across "
                             f"{input_context.num_input_pipelines} workers; rebuild with more "
                             "shards (--num_shards)")
        files = files[input_context.input_pipeline_id::input_context.num_input_pipelines]
    return files


def make_dataset(dataset_dir, split, batch_size, *, shuffle=False, seed=0, repeat=False,
                 deterministic=True, cache=False, in_memory=False, drop_remainder=False,
                 input_context=None, transform=None, shuffle_rows=100_000, part=None,
                 holdout_every=10):
    """A `tf.data.Dataset` of `(features, label)` batches read from a build's TFRecords.

    Streaming (the default): files are interleaved, each record (a block of rows) parsed
    with a few vectorised ops, then cut into batches (`Dataset.rebatch`), so memory holds a
    shuffle buffer, not the split.

    Args:
        dataset_dir: str. A build folder written by `build_tfrecords`.
        split: str. "train", "validation" or "test".
        batch_size: int. Examples per batch (per replica batch when `input_context` is given).
        shuffle: bool. Shuffle files, blocks and rows (with `seed`), anew each epoch: about
            `shuffle_rows` rows of blocks are shuffled, then the rows of each 16 blocks. With
            `in_memory` or `cache` the whole split is shuffled.
        seed: int. Shuffle seed.
        repeat: bool. Repeat forever.
        deterministic: bool. Keep a fixed element order for a fixed seed (slightly slower).
        cache: bool. Keep the parsed blocks in memory after the first pass.
        in_memory: bool. Read and parse the split once, then serve batches by gathering
            shuffled indices from in-memory tensors: several times faster than re-parsing
            records every epoch, for splits that fit in memory (all of ML-1M does).
        drop_remainder: bool. Drop the last partial batch.
        input_context: `tf.distribute.InputContext` or None. Shards by file across input
            pipelines (multi-worker training).
        transform: callable or None. Maps a features dict to another (for example a
            preprocessing model). With `in_memory` it runs once over the whole split,
            otherwise on every batch.
        shuffle_rows: int. Rows in the block shuffle buffer when streaming.
        part: None (the whole split), "held" or "rest": a held-out slice of the split and
            the rest of it, for searches whose architecture weights must not train on the
            batches of the ordinary weights nor see the validation split. The slice is every
            `holdout_every`-th row of each file, the same rows every epoch, streaming or
            in memory.
        holdout_every: int >= 2. See `part`.

    Returns:
        A dataset of `(features dict of name -> tensor (batch, ...), label)`, prefetched.
    """
    meta = read_metadata(dataset_dir)
    _check_format(dataset_dir, meta)
    if part not in (None, "held", "rest"):
        raise ValueError(f"part must be None, 'held' or 'rest', got {part!r}")
    if part is not None and not (isinstance(holdout_every, int) and holdout_every >= 2):
        raise ValueError(f"holdout_every must be an int >= 2, got {holdout_every!r}")
    if in_memory:
        return _in_memory_dataset(dataset_dir, split, batch_size, shuffle, seed, repeat,
                                  drop_remainder, input_context, transform, part,
                                  holdout_every)
    files = _files(dataset_dir, meta, split, input_context)
    compression = meta["compression"]
    block_rows = meta["block_rows"]
    label = meta["label"]["name"]
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    records, parse = _records_and_parser(meta, compression, part, holdout_every)
    ds = ds.interleave(
        records,
        cycle_length=max(1, min(len(files), 8)) if shuffle else 1,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if cache:
        ds = ds.cache()
    if shuffle:
        examples = meta["splits"][split]["examples"]
        buffer = -(-(examples if cache else shuffle_rows) // block_rows)
        ds = ds.shuffle(max(1, buffer), seed=seed, reshuffle_each_iteration=True)
        ds = _shuffle_rows(ds.rebatch(16 * block_rows), seed)
    if repeat:
        ds = ds.repeat()
    ds = ds.rebatch(batch_size, drop_remainder=drop_remainder)

    def split_label(features):
        features = dict(features)
        y = features.pop(label)
        return (transform(features) if transform else features), y

    ds = ds.map(split_label, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _shuffle_rows(ds, seed):
    """Permutes the rows within each element, with a new permutation each epoch."""
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

    def permute(block, block_seed):
        n = tf.shape(next(iter(block.values())), out_type=tf.int64)[0]
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n), seed=tf.stack([tf.constant(seed, tf.int64), block_seed]))
        return {name: tf.gather(t, order) for name, t in block.items()}

    return tf.data.Dataset.zip(ds, seeds).map(permute, num_parallel_calls=tf.data.AUTOTUNE)


def _in_memory_dataset(dataset_dir, split, batch_size, shuffle, seed, repeat,
                       drop_remainder, input_context, transform, part=None, holdout_every=10):
    arrays = read_examples(dataset_dir, split, input_context=input_context, part=part,
                           holdout_every=holdout_every)
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


def _records_and_parser(meta, compression, part, holdout_every):
    """(file -> records dataset, parser of its elements into row blocks); with `part`, the
    records are numbered per file and the parser keeps the rows of that part (see
    `make_dataset`)."""

    def parse(record):
        return blocks.parse_block(record, meta["columns"], meta["label"])

    if part is None:
        return (lambda f: tf.data.TFRecordDataset(f, compression_type=compression)), parse
    block_rows = meta["block_rows"]

    def parse_part(index, record):
        block = parse(record)
        rows = tf.shape(next(iter(block.values())))[0]
        offset = index * block_rows + tf.range(rows, dtype=tf.int64)
        keep = tf.equal(offset % holdout_every == 0, part == "held")
        return {name: tf.boolean_mask(value, keep) for name, value in block.items()}

    return (lambda f: tf.data.TFRecordDataset(f, compression_type=compression).enumerate(),
            parse_part)


def read_examples(dataset_dir, split, input_context=None, part=None, holdout_every=10):
    """All examples of a split as numpy arrays in file order (for tests and small splits);
    `part`, `holdout_every`: as `make_dataset`'s."""
    meta = read_metadata(dataset_dir)
    _check_format(dataset_dir, meta)
    files = _files(dataset_dir, meta, split, input_context)
    records, parse = _records_and_parser(meta, meta["compression"], part, holdout_every)
    ds = tf.data.Dataset.from_tensor_slices(files).flat_map(records).map(
        parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    out = {}
    for block in ds.as_numpy_iterator():
        for name, value in block.items():
            out.setdefault(name, []).append(value)
    return {name: np.concatenate(parts) for name, parts in out.items()}
