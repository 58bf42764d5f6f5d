"""The streaming build: TFRecords of a large table in memory that does not grow with its rows.

For specs with one examples table, no joins, no dense tables and a "files" or "ordered"
split (Criteo's logs, the generators' files). Three passes over the sources:

0. Each file is cut into pieces at line ends (Parquet: at row groups) and the rows of each
   piece are counted, so an ordered split's boundaries are known before anything is read.
1. The pieces are read in parallel, chunk by chunk (pyarrow's CSV and Parquet readers),
   typed and checked as the spec declares; the training rows' value counts, numeric
   statistics and label statistics are gathered per piece and merged.
2. The pieces are read again and each (piece, split) writes its own shard of block records,
   in parallel; reading a split's shards in order gives its rows in file order.

Memory holds a few chunks per thread and the value counts: it grows with the vocabularies,
not with the rows. Checks are those of the in-memory reader, per chunk; a key or `unique`
check needs the whole table, so such specs are read whole (`tfrecords.load_examples`).
"""

import concurrent.futures
import csv
import io
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from deepmix_tf import tasks as tasks_lib
from deepmix_tf.data import blocks, readers, splits
from deepmix_tf.data.errors import DataFormatError
from deepmix_tf.files import staged_directory

CHUNK_BYTES = 8 << 20  # CSV read block
CHUNK_ROWS = 65536  # Parquet batch


def why_not_streaming(spec):
    """None when `build_streaming` can build the spec, else the reason in words."""
    table = spec.tables[spec.examples["table"]]
    if spec.examples["join"] or len(spec.tables) > 1:
        return "it reads several tables"
    if spec.dense_tables or spec.text:
        return "dense tables and item text need whole tables"
    if spec.split["type"] not in ("files", "ordered"):
        return f"a {spec.split['type']} split needs the whole table"
    if table.key or table.unique:
        return "key and unique checks need the whole table"
    if table.format["type"] == "delimited" and len(table.format["separator"]) > 1:
        return "multi-character separators are read by the whole-table reader"
    if any(c.regex or c.references or c.multi and c.values for c in table.columns):
        return "regex, references and multi-valued value checks are not streamed"
    return None


# ------------------------------------------------------------------------------- pieces


class _Range(io.RawIOBase):
    """Bytes [start, stop) of a file, as a file object."""

    def __init__(self, path, start, stop):
        self.file = open(path, "rb")
        self.file.seek(start)
        self.left = stop - start

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self.left)
        if n <= 0:
            return 0
        got = self.file.readinto(memoryview(buffer)[:n])
        self.left -= got
        return got

    def close(self):
        self.file.close()
        super().close()


def _text_pieces(path, header, count):
    """[(start byte, stop byte, first line, rows)] of `count` pieces cut at line ends."""
    size = os.path.getsize(path)
    cuts, lines = [0], []
    with open(path, "rb") as f:
        if header:
            f.readline()
            cuts[0] = f.tell()
        for i in range(1, count):
            target = max(cuts[-1], size * i // count)
            f.seek(target)
            if target > cuts[-1]:
                f.readline()  # to the next line end
            cuts.append(min(size, f.tell()))
        cuts.append(size)
        for start, stop in zip(cuts, cuts[1:]):
            f.seek(start)
            n, left, last = 0, stop - start, b"\n"
            while left > 0:
                data = f.read(min(left, 1 << 24))
                n += data.count(b"\n")
                left -= len(data)
                last = data[-1:] or last
            lines.append(n + (last != b"\n" and stop > start))
    first = 1 + int(bool(header))
    out = []
    for start, stop, n in zip(cuts, cuts[1:], lines):
        if stop > start:
            out.append((start, stop, first, n))
        first += n
    return out


def _pieces(spec, root, count):
    """{split or None: [(path, piece description, first line, rows)]} in file order."""
    table = spec.tables[spec.examples["table"]]
    files = table.files
    if isinstance(files, dict):
        named = [(split, files[split]) for split in splits.SPLITS]
    else:
        named = [(None, f) for f in ([files] if isinstance(files, str) else files)]
    out = {}
    for split, name in named:
        path = readers._resolve(root, name)
        if table.format["type"] == "parquet":
            meta = pq.ParquetFile(path).metadata
            groups = np.array_split(np.arange(meta.num_row_groups), min(count, max(
                1, meta.num_row_groups)))
            first = 1
            for g in groups:
                rows = sum(meta.row_group(int(i)).num_rows for i in g)
                if rows:
                    out.setdefault(split, []).append((path, ("groups", g.tolist()), first,
                                                      rows))
                first += rows
        else:
            for start, stop, first, rows in _text_pieces(path, table.format["header"], count):
                out.setdefault(split, []).append((path, ("bytes", start, stop), first, rows))
        if not out.get(split):
            raise DataFormatError(path, None, None, "no rows: the file holds no data")
    return out


def _header(path, fmt, encoding):
    if not fmt["header"]:
        return list(fmt["names"])
    with open(path, "rb") as f:
        line = f.readline().decode(encoding).rstrip("\r\n")
    if not line:
        raise DataFormatError(path, 1, None, "empty file, expected a header line")
    return [h.strip() for h in next(csv.reader([line], delimiter=fmt["separator"]))]


def _parquet_chunks(path, piece, sources):
    """Yields (first line, {source: arrow array}) of some row groups, chunk by chunk."""
    reader = pq.ParquetFile(path)
    missing = [s for s in sources if s not in reader.schema_arrow.names]
    if missing:
        raise DataFormatError(path, None, missing[0], f"no column(s) {missing}; it has "
                                                      f"{reader.schema_arrow.names}")
    if not piece[1]:
        return
    line = 1 + sum(reader.metadata.row_group(i).num_rows for i in range(piece[1][0]))
    for batch in reader.iter_batches(CHUNK_ROWS, row_groups=piece[1], columns=sources):
        yield line, {s: batch.column(s) for s in sources}
        line += batch.num_rows


def _csv_stream(path, piece, first_line, table, sources):
    """pyarrow's streaming CSV reader over a byte range of a text file."""
    fmt = table.format
    header = _header(path, fmt, table.encoding)
    missing = [s for s in sources if s not in header]
    if missing:
        raise DataFormatError(path, 1, missing[0],
                              f"header lacks column(s) {missing}; it has {header}")
    errors = []

    def invalid(row):
        # An exception raised here is lost in pyarrow: kept, and raised by `_iterate`.
        errors.append(DataFormatError(
            path, None if row.number is None else first_line + row.number - 1, None,
            f"expected {row.expected_columns} {fmt['separator']!r}-separated fields "
            f"({fmt['separator'].join(header)}), got {row.actual_columns}: "
            f"{row.text[:80]!r}"))
        return "error"

    return errors, lambda: pacsv.open_csv(
        _Range(path, piece[1], piece[2]),
        read_options=pacsv.ReadOptions(column_names=header, block_size=CHUNK_BYTES,
                                       encoding=table.encoding, use_threads=False),
        parse_options=pacsv.ParseOptions(delimiter=fmt["separator"], invalid_row_handler=invalid,
                                         quote_char='"' if fmt["type"] == "csv" else False),
        convert_options=pacsv.ConvertOptions(
            include_columns=sources, column_types={s: pa.string() for s in sources},
            strings_can_be_null=False, quoted_strings_can_be_null=False))


def _iterate(path, piece, first_line, table):
    """Yields (first line, {source: arrow array}) of one piece, chunk by chunk."""
    sources = list(dict.fromkeys(c.source for c in table.columns))
    if piece[0] == "groups":
        yield from _parquet_chunks(path, piece, sources)
        return
    errors, open_stream = _csv_stream(path, piece, first_line, table, sources)
    line = first_line
    try:
        stream = None
        while True:
            try:
                stream = stream or open_stream()
                batch = stream.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as e:
                if errors:
                    raise errors[0] from None
                raise DataFormatError(path, None, None, f"bad CSV after line {line}: {e}") \
                    from None
            if batch.num_rows:
                yield line, {name: batch.column(name) for name in batch.schema.names}
                line += batch.num_rows
    except UnicodeDecodeError:
        raise DataFormatError(path, None, None, f"not valid {table.encoding} text") from None


# ------------------------------------------------------------------------------- typing


def _typed(array, column, path, first_line):
    """One chunk of a column -> numpy int64/float32, an arrow string array, or an arrow
    list<int64> array; checked as `readers` checks (its messages on failure)."""
    n = len(array)

    def lines():
        return list(range(first_line, first_line + n))

    def slow():
        # The whole-table reader's checks find and name the bad value.
        strings = array.cast(pa.string()).fill_null("").to_pylist()
        readers._typed([v.strip() for v in strings], lines(), path, column)
        raise DataFormatError(path, None, column.source, "could not read the column")

    if column.dtype == "int64_list":
        if not pa.types.is_list(array.type) and not pa.types.is_large_list(array.type):
            raise DataFormatError(path, first_line, column.source,
                                  f"expected a list of integers, got a column of {array.type}")
        if array.null_count:
            if not column.optional:
                i = int(np.flatnonzero(np.asarray(array.is_null()))[0])
                raise DataFormatError(path, first_line + i, column.source,
                                      "empty value (the column is not optional)")
            array = pc.if_else(array.is_null(), pa.scalar([], array.type), array)
        try:
            return array.cast(pa.large_list(pa.int64()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise DataFormatError(path, first_line, column.source,
                                  "expected lists of integers") from None
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        text = pc.utf8_trim_whitespace(array)
        empty = pc.fill_null(pc.equal(text, ""), True)
    else:  # typed Parquet
        text, empty = array, array.is_null()
    empty_np = np.asarray(empty)
    if empty_np.any() and not column.optional:
        i = int(np.flatnonzero(empty_np)[0])
        raise DataFormatError(path, first_line + i, column.source,
                              "empty value (the column is not optional)")
    if column.dtype == "string":
        out = pc.if_else(empty, column.fill, text.cast(pa.string()))
        if column.values is not None and not column.multi:
            bad = ~np.asarray(pc.is_in(out, pa.array(list(column.values), pa.string()))) \
                & ~empty_np
            if bad.any():
                readers._check_values(np.asarray(out.to_pylist(), object), empty_np, lines(),
                                      path, column)
        return out
    kind = pa.int64() if column.dtype == "int64" else pa.float64()
    try:
        if pa.types.is_string(text.type) or pa.types.is_large_string(text.type):
            text = pc.if_else(empty, "0", text)
        values = pc.cast(text, kind).fill_null(0)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        slow()
    out = np.asarray(values, np.int64 if column.dtype == "int64" else np.float64)
    if column.dtype == "float32":
        bad = ~np.isfinite(out.astype(np.float32))
        if bad.any():
            slow()
        out = out.astype(np.float32)
    if empty_np.any():
        out = np.where(empty_np, column.fill, out).astype(out.dtype)
    readers._check_values(out, empty_np, lines(), path, column)
    return out


def _typed_chunk(table, raw, path, first_line):
    return {c.name: _typed(raw[c.source], c, path, first_line) for c in table.columns}


# ------------------------------------------------------------------------------- statistics


class _Counts:
    """Value counts of one feature, merged now and then (arrow's hash group-by)."""

    def __init__(self):
        self.parts, self.rows, self.merged = [], 0, 0

    def add(self, values):
        if len(values):
            counted = pc.value_counts(values).flatten()
            self.parts.append(pa.table({"v": counted[0], "c": counted[1].cast(pa.int64())}))
            self.rows += len(self.parts[-1])
        # Merged when the parts hold twice the distinct values so far: memory stays within
        # a few times the vocabulary, and each count is merged O(1) times on average.
        if self.rows > 2 * self.merged + (1 << 16):
            self.merge()

    def merge(self):
        if len(self.parts) > 1:
            table = pa.concat_tables(self.parts).group_by("v").aggregate([("c", "sum")])
            self.parts = [table.rename_columns(["v", "c"])]
        self.rows = self.merged = len(self.parts[0]) if self.parts else 0
        return self

    def absorb(self, other):
        self.parts += other.merge().parts
        self.rows += other.rows
        return self.merge()

    def arrays(self):
        self.merge()
        if not self.parts:
            return np.asarray([], object), np.asarray([], np.int64)
        t = self.parts[0]
        values = t.column("v").to_numpy(zero_copy_only=False)
        counts = t.column("c").to_numpy()
        order = np.argsort(values, kind="stable")
        return values[order], counts[order]


class _Moments:
    """Count, mean and centred sum of squares, merged exactly (Chan et al.)."""

    def __init__(self, n=0, mean=0.0, m2=0.0):
        self.n, self.mean, self.m2 = n, mean, m2

    def add(self, x):
        if len(x):
            self.absorb(_Moments(len(x), float(x.mean()), float(((x - x.mean()) ** 2).sum())))

    def absorb(self, o):
        n = self.n + o.n
        if n:
            delta = o.mean - self.mean
            self.mean += delta * o.n / n
            self.m2 += o.m2 + delta * delta * self.n * o.n / n
            self.n = n
        return self


def _counted(spec):
    """The features whose vocabulary is counted from the training split."""
    return [f for f in spec.features if f.type != "numeric" and f.vocabulary["values"] is None
            and f.vocabulary["hash_buckets"] is None and f.vocabulary["identity"] is None]


def _vocabulary_items(feature, column, values):
    """A chunk's column -> the arrow array of values a vocabulary counts."""
    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = pa.array(values)
    if feature.type == "multi_hot":
        values = values.filter(pc.not_equal(values, ""))
        values = pc.list_flatten(pc.split_pattern(values, feature.separator))
    if feature.prefix:
        values = pc.utf8_slice_codeunits(values, 0, feature.prefix)
    if column.optional:
        values = values.filter(pc.not_equal(values, pa.scalar(column.fill, values.type)))
    return values


class _Stats:
    def __init__(self, spec, task):
        self.spec, self.task = spec, task
        self.columns = {c.name: c for c in spec.tables[spec.examples["table"]].columns}
        self.counts = {f.name: _Counts() for f in _counted(spec)}
        self.numeric = {f.name: _Moments() for f in spec.features if f.type == "numeric"}
        self.label = None  # (rows, stats)
        self.bags = {name: 0 for name, c in self.columns.items() if c.dtype == "int64_list"}

    def add(self, typed, train):
        """Adds a chunk; `train` selects its training rows (a slice or None)."""
        from deepmix_tf.data.tfrecords import _numeric

        for name in self.bags:
            lengths = np.asarray(typed[name].value_lengths())
            self.bags[name] = max(self.bags[name], int(lengths.max()) if len(lengths) else 0)
        if train is None:
            return
        part = {name: v[train] for name, v in typed.items()}
        for f in self.spec.features:
            if f.name in self.counts:
                self.counts[f.name].add(_vocabulary_items(f, self.columns[f.name],
                                                          part[f.name]))
            elif f.name in self.numeric:
                self.numeric[f.name].add(_numeric(f, part[f.name]))
        labels = self._labels(part)
        if len(labels):
            stats = self.task.label_stats(labels)
            self.label = _merge_label_stats(self.label, (len(labels), stats))

    def _labels(self, part):
        values = part[self.task.label]
        if isinstance(values, (pa.Array, pa.ChunkedArray)):
            values = np.asarray(values.to_pylist(), object)
        return self.task.encode_labels(values)

    def absorb(self, other):
        for name, c in self.counts.items():
            c.absorb(other.counts[name])
        for name, m in self.numeric.items():
            m.absorb(other.numeric[name])
        for name in self.bags:
            self.bags[name] = max(self.bags[name], other.bags[name])
        if other.label is not None:
            self.label = _merge_label_stats(self.label, other.label)
        return self


def _merge_label_stats(a, b):
    """Row-weighted mean of two chunks' `label_stats` (each entry is a mean)."""
    if a is None:
        return b
    n = a[0] + b[0]
    return n, {k: (np.asarray(a[1][k]) * a[0] / n + np.asarray(b[1][k]) * b[0] / n).tolist()
               for k in a[1]}


# ------------------------------------------------------------------------------- writing


class _Shard:
    """Block records of consecutive rows into one file; rows carried over between chunks."""

    def __init__(self, path, spec, task, bag_lengths, options):
        import tensorflow as tf

        self.path, self.spec, self.task = path, spec, task
        self.bag_lengths, self.block_rows = bag_lengths, options["block_rows"]
        self.writer = tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(
            compression_type=options["compression"], compression_level=1))
        self.pending, self.rows = [], 0

    def add(self, typed):
        from deepmix_tf.data.tfrecords import written_columns

        columns = []
        for name, dtype in written_columns(self.spec):
            v = typed[name]
            if dtype == "string":
                v = blocks.string_buffers(v)
            elif dtype == "int64_list":
                v = blocks.pad_bags(v, self.bag_lengths[name])
            columns.append((name, dtype, v))
        label = self.task.encode_labels(
            np.asarray(typed[self.task.label].to_pylist(), object)
            if isinstance(typed[self.task.label], (pa.Array, pa.ChunkedArray))
            else typed[self.task.label])
        self.pending.append((columns, label))
        self.rows += len(label)
        self._flush(final=False)

    def _flush(self, final):
        pending = sum(len(label) for _, label in self.pending)
        if not pending or (pending < self.block_rows and not final):
            return
        columns, label = _concatenate(self.pending)
        usable = len(label) if final else len(label) // self.block_rows * self.block_rows
        for record in blocks.encode_blocks(
                [(n, d, blocks.slice_column(d, v, 0, usable)) for n, d, v in columns],
                (self.task.label, label[:usable]), self.block_rows):
            self.writer.write(record)
        self.pending = [] if usable == len(label) else [(
            [(n, d, blocks.slice_column(d, v, usable, len(label))) for n, d, v in columns],
            label[usable:])]

    def close(self):
        if self.writer is not None:
            try:
                self._flush(final=True)
            finally:
                self.writer.close()
                self.writer = None


def _concatenate(parts):
    if len(parts) == 1:
        return parts[0]
    columns = []
    for i, (name, dtype, _) in enumerate(parts[0][0]):
        values = [p[0][i][2] for p in parts]
        if dtype == "string":
            offsets, data, base = [np.zeros(1, np.int64)], [], 0
            for o, d in values:
                offsets.append(o[1:] + base)
                data.append(d)
                base += len(d)
            values = (np.concatenate(offsets), b"".join(data))
        else:
            values = np.concatenate(values)
        columns.append((name, dtype, values))
    return columns, np.concatenate([p[1] for p in parts])


# ------------------------------------------------------------------------------- the build


def _split_rows(spec, pieces):
    """For each piece, [(split, start row, stop row)] of its rows (rows counted in the
    piece)."""
    out = []
    if spec.split["type"] == "files":
        for split in splits.SPLITS:
            for p in pieces[split]:
                out.append((split, p, [(split, 0, p[3])]))
        return out
    all_pieces = [p for part in pieces.values() for p in part]
    total = sum(p[3] for p in all_pieces)
    counts = splits._counts(total, spec.split["fractions"])
    bounds = np.cumsum([0] + counts)
    start = 0
    for p in all_pieces:
        parts = []
        for i, split in enumerate(splits.SPLITS):
            lo, hi = max(start, bounds[i]), min(start + p[3], bounds[i + 1])
            if hi > lo:
                parts.append((split, int(lo - start), int(hi - start)))
        out.append((None, p, parts))
        start += p[3]
    return out


def _pass(plan, table, work, threads, shards=None):
    """Runs `work(piece index, typed chunk, the chunk's first row in the piece)` over every
    chunk of every piece, pieces in parallel, closing each piece's `shards` when it is
    done; returns each piece's row count."""

    def run(i):
        _, (path, piece, first, _rows), _ = plan[i]
        offset = 0
        try:
            for line, raw in _iterate(path, piece, first, table):
                typed = _typed_chunk(table, raw, path, line)
                work(i, typed, offset)
                offset += len(next(iter(typed.values())))
        finally:
            for (owner, _), shard in (shards or {}).items():
                if owner == i:
                    shard.close()
        return offset

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(run, range(len(plan))))


def _rows_of(parts, split, offset, n):
    for name, lo, hi in parts:
        if name == split and hi > offset and lo < offset + n:
            return slice(max(lo, offset) - offset, min(hi, offset + n) - offset)
    return None


def build_streaming(spec, data_dir, final, options, fingerprint, sources, log=print,
                    threads=None):
    """Builds the TFRecords of a spec that `why_not_streaming` accepts (see the module
    docstring); the arguments are `tfrecords.build_tfrecords`'s, resolved.

    Records hold raw values, so without bags one pass both gathers the statistics and
    writes the shards; bags are padded to the longest of the split, so with `int64_list`
    columns a first pass finds it (and the statistics), a second writes.
    """
    from deepmix_tf.data import tfrecords

    table = spec.tables[spec.examples["table"]]
    threads = threads or os.cpu_count() or 1
    pieces = _pieces(spec, spec.data_root(data_dir), max(options["num_shards"], threads))
    plan = _split_rows(spec, pieces)
    task_info = dict(spec.task)
    task = tasks_lib.make_task(task_info)
    one_pass = not any(c.dtype == "int64_list" for c in table.columns)
    with staged_directory(final) as tmp:
        if one_pass:
            stats, (names, shards) = _gathering(spec, task, plan), _shards(
                spec, task, plan, tmp, {}, options)
            counted = _pass(plan, table, _both(stats, shards, plan), threads, shards)
            if counted != [p[1][3] for p in plan]:
                for name in names.values():
                    os.remove(os.path.join(tmp, name))
                one_pass = False
        if not one_pass:
            stats = _gathering(spec, task, plan)
            counted = _pass(plan, table, _both(stats, {}, plan), threads)
            if counted != [p[1][3] for p in plan]:
                # Blank lines (which the reader skips) or quoted line ends: the rows as read
                # place the split boundaries; gather the statistics of the right rows.
                plan = _recounted(spec, plan, counted)
                stats = _gathering(spec, task, plan)
                _pass(plan, table, _both(stats, {}, plan), threads)
            bags = _total(stats).bags
            names, shards = _shards(spec, task, plan, tmp,
                                    {n: max(1, v) for n, v in bags.items()}, options)
            _pass(plan, table, _both(None, shards, plan), threads, shards)
        total = _total(stats)
        bag_lengths = {name: max(1, n) for name, n in total.bags.items()}
        split_rows = {s: sum(hi - lo for _, _, parts in plan for n, lo, hi in parts if n == s)
                      for s in splits.SPLITS}
        for name, n in split_rows.items():
            if not n:
                raise DataFormatError(spec.path, None, "split",
                                      f"the {name} split of {spec.name!r} has no examples")
        task_info["stats"] = total.label[1]
        log(f"{spec.name}: {sum(split_rows.values()):,} rows "
            f"({', '.join(f'{s} {n:,}' for s, n in split_rows.items())})")
        split_meta = {s: {"examples": split_rows[s],
                          "files": [names[(i, s)] for i in range(len(plan)) if (i, s) in names]}
                      for s in splits.SPLITS}
        metadata = {
            **options, "fingerprint": fingerprint, "dataset": spec.name,
            "protocol": spec.protocol, "spec": spec.raw, "spec_path": spec.path,
            "task": task_info, "features": _feature_metadata(spec, total),
            "columns": tfrecords.column_metadata(spec, bag_lengths),
            "label": {"name": task.label, "shape": task.label_shape()},
            "splits": split_meta, "dense_tables": {}, "items": None, "sources": sources,
            "streamed": True,
        }
        with open(os.path.join(tmp, tfrecords.METADATA), "w") as f:
            json.dump(metadata, f, indent=1)
    log(f"wrote {final}")
    return final


def _gathering(spec, task, plan):
    return [_Stats(spec, task) for _ in plan]


def _total(stats):
    total = _Stats(stats[0].spec, stats[0].task)
    for s in stats:
        total.absorb(s)
    return total


def _recounted(spec, plan, counted):
    fixed = {}
    for (split, p, _), n in zip(plan, counted):
        fixed.setdefault(split, []).append(p[:3] + (n,))
    return _split_rows(spec, fixed)


def _shards(spec, task, plan, directory, bag_lengths, options):
    """One `_Shard` per (piece, split) with rows: ({key: file name}, {key: shard})."""
    from deepmix_tf.data import tfrecords

    names, shards = {}, {}
    for s in splits.SPLITS:
        owners = [i for i, (_, _, parts) in enumerate(plan) if any(p[0] == s for p in parts)]
        for k, i in enumerate(owners):
            names[(i, s)] = tfrecords.shard_name(s, k, len(owners), options["compression"])
            shards[(i, s)] = _Shard(os.path.join(directory, names[(i, s)]), spec, task,
                                    bag_lengths, options)
    return names, shards


def _both(stats, shards, plan):
    """The work on one chunk: add its training rows to the statistics and/or write its rows
    to their shards."""

    def work(i, typed, offset):
        n = len(next(iter(typed.values())))
        if stats is not None:
            stats[i].add(typed, _rows_of(plan[i][2], "train", offset, n))
        for s, _, _ in plan[i][2] if shards else ():
            rows = _rows_of(plan[i][2], s, offset, n)
            if rows is not None:
                shards[(i, s)].add({name: v[rows] for name, v in typed.items()})

    return work


def _feature_metadata(spec, stats):
    """`tfrecords.feature_metadata` from streamed statistics."""
    from deepmix_tf.data import tfrecords

    def moments(f):
        m = stats.numeric[f.name]
        return float(m.mean), float(np.sqrt(m.m2 / m.n)) if m.n else 0.0

    def vocabulary_of(f, column):
        return tfrecords.vocabulary_from_counts(f, *stats.counts[f.name].arrays())

    return tfrecords.feature_entries(spec, moments, vocabulary_of)
