"""Columnar blocks: the record layout of a build's TFRecords (format 3).

One record is one `tf.train.Example` holding a block of consecutive rows, each column as
raw little-endian bytes, so that writing and reading cost a few numpy and TensorFlow calls
per block instead of Python work per row:

    __rows__          int64: rows in the block
    <int64 column>    bytes: int64 (rows,)
    <float32 column>  bytes: float32 (rows,)   (the label: float32 (rows, *label shape))
    <string column>   bytes: the UTF-8 values back to back, and
    <name>/offsets    bytes: int64 (rows + 1,) offsets of each value in them
    <int64_list col>  bytes: int64 (rows, length): a bag padded on the right with -1

`parse_block` reads one record back into a dict of tensors whose first axis is the row.
"""

import numpy as np
import pyarrow as pa
import tensorflow as tf

ROWS = "__rows__"
PAD = -1  # the padding of int64_list bags


def string_buffers(values):
    """A column of strings -> (int64 offsets (n + 1,), bytes of the values back to back).

    Args:
        values: a numpy/pandas array of str, or a pyarrow string array.
    """
    array = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(
        np.asarray(values, dtype=object), pa.string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    array = array.cast(pa.large_string()).fill_null("")
    _, offsets, data = array.buffers()
    start = array.offset
    offsets = np.frombuffer(offsets, np.int64, len(array) + 1, start * 8)
    data = b"" if data is None else data.to_pybytes()[offsets[0]:offsets[-1]]
    return offsets - offsets[0], data


def pad_bags(bags, length):
    """A column of int bags -> int64 (n, length) padded with -1.

    Args:
        bags: an (n, k) int array already padded with -1, a sequence of int sequences,
            or a pyarrow list array.
        length: int. The padded width (the longest bag of the whole split or more).
    """
    if isinstance(bags, np.ndarray) and bags.ndim == 2:
        out = np.full((len(bags), length), PAD, np.int64)
        out[:, :bags.shape[1]] = bags
        return out
    if isinstance(bags, pa.ChunkedArray):
        bags = bags.combine_chunks()
    if not isinstance(bags, pa.Array):
        bags = pa.array([list(b) if b is not None else [] for b in bags], pa.list_(pa.int64()))
    bags = bags.cast(pa.large_list(pa.int64()))
    lengths = np.asarray(bags.value_lengths().fill_null(0), np.int64)
    if len(lengths) and lengths.max() > length:
        raise ValueError(f"a bag of {lengths.max()} items is longer than {length}")
    values = np.asarray(bags.flatten(), np.int64)
    out = np.full((len(bags), length), PAD, np.int64)
    rows = np.repeat(np.arange(len(bags)), lengths)
    starts = np.cumsum(lengths) - lengths
    out[rows, np.arange(len(values)) - np.repeat(starts, lengths)] = values
    return out


def encode_block(columns, label):
    """One serialized block record.

    Args:
        columns: list of (name, dtype, values); values as `block_columns` makes them.
        label: (name, float32 array (rows,) or (rows, k)).

    Returns:
        bytes.
    """
    example = tf.train.Example()
    feature = example.features.feature
    rows = len(label[1])
    feature[ROWS].int64_list.value.append(rows)
    for name, dtype, values in columns:
        if dtype == "string":
            offsets, data = values
            feature[name].bytes_list.value.append(data)
            feature[f"{name}/offsets"].bytes_list.value.append(
                offsets.astype("<i8", copy=False).tobytes())
        else:
            kind = "<f4" if dtype == "float32" else "<i8"
            feature[name].bytes_list.value.append(
                np.ascontiguousarray(values, dtype=kind).tobytes())
    feature[label[0]].bytes_list.value.append(
        np.ascontiguousarray(label[1], dtype="<f4").tobytes())
    return example.SerializeToString()


def slice_column(dtype, values, start, stop):
    """Rows [start, stop) of a column in `encode_block`'s form."""
    if dtype == "string":
        offsets, data = values
        part = offsets[start:stop + 1]
        return part - part[0], data[part[0]:part[-1]]
    return values[start:stop]


def encode_blocks(columns, label, block_rows):
    """Yields the serialized blocks of `block_rows` rows (the last may be shorter)."""
    n = len(label[1])
    for start in range(0, n, block_rows):
        stop = min(n, start + block_rows)
        yield encode_block([(name, dtype, slice_column(dtype, v, start, stop))
                            for name, dtype, v in columns],
                           (label[0], label[1][start:stop]))


def parse_block(record, columns, label):
    """One block record -> {name: tensor with the row as first axis}, the label included.

    Args:
        record: scalar string tensor.
        columns: the build's `metadata["columns"]` (name, dtype, and `length` of bags).
        label: the build's `metadata["label"]` (name, shape).
    """
    spec = {ROWS: tf.io.FixedLenFeature([], tf.int64),
            label["name"]: tf.io.FixedLenFeature([], tf.string)}
    for c in columns:
        spec[c["name"]] = tf.io.FixedLenFeature([], tf.string)
        if c["dtype"] == "string":
            spec[f"{c['name']}/offsets"] = tf.io.FixedLenFeature([], tf.string)
    parsed = tf.io.parse_single_example(record, spec)
    rows = parsed[ROWS]
    out = {}
    for c in columns:
        raw = parsed[c["name"]]
        if c["dtype"] == "string":
            offsets = tf.io.decode_raw(parsed[f"{c['name']}/offsets"], tf.int64)
            out[c["name"]] = tf.strings.substr(raw, offsets[:-1], offsets[1:] - offsets[:-1])
        elif c["dtype"] == "float32":
            out[c["name"]] = tf.io.decode_raw(raw, tf.float32)
        elif c["dtype"] == "int64_list":
            out[c["name"]] = tf.reshape(tf.io.decode_raw(raw, tf.int64), [rows, c["length"]])
        else:
            out[c["name"]] = tf.io.decode_raw(raw, tf.int64)
    out[label["name"]] = tf.reshape(tf.io.decode_raw(parsed[label["name"]], tf.float32),
                                    tf.concat([[rows], tf.constant(label["shape"], tf.int64)],
                                              0))
    return out
