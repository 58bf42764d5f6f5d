"""Reading the tables of a dataset spec: CSV/TSV (with or without a header), files with any
other separator (ML-1M's `::`), Parquet; typed and checked as the spec declares.

Every table comes back as a DataFrame of its declared columns plus `_file` and `_line`, the
file and 1-based line each row came from (the header is line 1), so that a check made after
reading (duplicates, unknown ids, failed joins) still names the line at fault. Malformed input
raises `DataFormatError` naming the file, the line and the field.
"""

import csv
import io
import os
import re

import numpy as np
import pandas as pd

from deepmix_tf.data.errors import DataFormatError

FILE, LINE, SPLIT = "_file", "_line", "_split"


def _shown(value):
    """A value as the file wrote it: `17`, `'M'`, not `np.int64(17)`."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _decode(path, encoding):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DataFormatError(path, line, None, f"not valid {encoding} text") from None


def _records(path, fmt, encoding):
    """Yields (line number, list of fields) of a text file's data rows, and first the header
    (line 1) when the format has one."""
    text = _decode(path, encoding)
    separator = fmt["separator"]
    if fmt["type"] == "delimited" and len(separator) > 1:
        # Lines end at "\n" only: str.splitlines would also cut at latin-1's \x85 and others.
        for number, line in enumerate(text.split("\n"), start=1):
            line = line.rstrip("\r")
            if line.strip():
                yield number, line.split(separator)
        return
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    line = 0
    try:
        for row in reader:
            start, line = line + 1, reader.line_num
            if row and any(field.strip() for field in row):
                yield start, row  # the line where this record starts
    except csv.Error as e:
        raise DataFormatError(path, reader.line_num, None, f"bad CSV: {e}") from None


def _raw_columns(path, fmt, encoding, sources):
    """The `sources` columns of one file as lists of stripped strings, and the line numbers."""
    if fmt["type"] == "parquet":
        try:
            frame = pd.read_parquet(path)
        except ImportError as e:
            raise ImportError(f"{path}: reading Parquet needs pyarrow ({e})") from None
        missing = [s for s in sources if s not in frame.columns]
        if missing:
            raise DataFormatError(path, None, missing[0],
                                  f"no column(s) {missing}; it has {list(frame.columns)}")
        # pandas reads an integer column with nulls as floats: 3.0 is written 3 again.
        # List columns (int64_list bags) stay lists.
        columns = [frame[s].tolist() if frame[s].dtype == object and len(frame) and any(
            isinstance(v, (list, np.ndarray)) for v in frame[s].head(100)) else
                   ["" if pd.isna(v) else str(int(v)) if isinstance(v, float) and v.is_integer()
                    else str(v).strip() for v in frame[s].tolist()] for s in sources]
        return columns, list(range(1, len(frame) + 1))
    records = _records(path, fmt, encoding)
    if fmt["header"]:
        try:
            _, header = next(records)
        except StopIteration:
            raise DataFormatError(path, 1, None, "empty file, expected a header line") from None
        header = [h.strip() for h in header]
        missing = [s for s in sources if s not in header]
        if missing:
            raise DataFormatError(path, 1, missing[0],
                                  f"header lacks column(s) {missing}; it has {header}")
    else:
        header = list(fmt["names"])
    index = [header.index(s) for s in sources]
    columns = [[] for _ in sources]
    lines = []
    what = repr(fmt["separator"]) + "-separated"
    for number, row in records:
        if len(row) != len(header):
            shown = fmt["separator"].join(row)[:80]
            raise DataFormatError(
                path, number, None,
                f"expected {len(header)} {what} fields ({fmt['separator'].join(header)}), "
                f"got {len(row)}: {shown!r}")
        for column, i in zip(columns, index):
            column.append(row[i].strip())
        lines.append(number)
    return columns, lines


def _typed(values, lines, path, column):
    """Strings of one column -> a typed numpy array, checked as the column declares."""
    if column.dtype == "int64_list":
        return _bags(values, lines, path, column)
    array = np.asarray(values, dtype=object)
    if column.regex:
        pattern = re.compile(column.regex)
        matches = [pattern.search(v) for v in values]
        array = np.asarray([m.group(1).strip() if m else ("" if column.optional else v)
                            for v, m in zip(values, matches)], dtype=object)
    empty = array == ""
    if empty.any() and not column.optional:
        i = int(np.flatnonzero(empty)[0])
        raise DataFormatError(path, lines[i], column.source,
                              "empty value (the column is not optional)")
    if column.dtype == "string":
        out = np.where(empty, column.fill, array).astype(object)
    else:
        numpy_type = np.int64 if column.dtype == "int64" else np.float32
        out = np.full(len(array), column.fill, dtype=numpy_type)
        present = array[~empty].astype(str)
        try:
            out[~empty] = present.astype(numpy_type)
            ok = column.dtype == "int64" or np.isfinite(out[~empty]).all()
        except (ValueError, OverflowError):
            ok = False
        if not ok:
            for i in np.flatnonzero(~empty):
                if not _parses(array[i], column.dtype):
                    what = "an integer" if column.dtype == "int64" else "a number"
                    raise DataFormatError(path, lines[i], column.source,
                                          f"expected {what}, got {array[i]!r} (64-bit "
                                          "integers, finite numbers)")
    _check_values(out, empty, lines, path, column)
    return out


def _bags(values, lines, path, column):
    """A Parquet list<int64> column -> object array of int64 arrays (null: empty bag if the
    column is optional)."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        if v is None or (not isinstance(v, (list, np.ndarray)) and pd.isna(v)):
            if not column.optional:
                raise DataFormatError(path, lines[i], column.source,
                                      "empty value (the column is not optional)")
            v = []
        if not isinstance(v, (list, np.ndarray)):
            raise DataFormatError(path, lines[i], column.source,
                                  f"expected a list of integers, got {v!r}")
        try:
            out[i] = np.asarray(v, np.int64).reshape(-1)
        except (TypeError, ValueError):
            raise DataFormatError(path, lines[i], column.source,
                                  f"expected a list of integers, got {v!r}") from None
    return out


def _parses(text, dtype):
    try:
        if dtype == "int64":
            return -2 ** 63 <= int(text) < 2 ** 63
        return bool(np.isfinite(np.float32(float(text))))
    except (ValueError, OverflowError):
        return False


def _check_values(out, empty, lines, path, column):
    present = ~empty
    if column.values is not None and not column.multi:
        bad = present & ~np.isin(out, np.asarray(column.values, dtype=out.dtype))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataFormatError(path, lines[i], column.source,
                                  f"unknown value {_shown(out[i])}; expected one of "
                                  f"{list(column.values)}")
    elif column.values is not None:
        allowed = set(column.values)
        for i in np.flatnonzero(present):
            for item in out[i].split(column.multi):
                if item not in allowed:
                    raise DataFormatError(
                        path, lines[i], column.source,
                        f"unknown value {item!r}; expected {column.multi!r}-separated "
                        f"values from {list(column.values)}")
    if column.range is not None:
        low, high = column.range
        bad = present & (((out < low) if low is not None else False)
                         | ((out > high) if high is not None else False))
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise DataFormatError(path, lines[i], column.source,
                                  f"value {out[i]} is outside [{low}, {high}]")


def read_file(path, table):
    """One file of a table as a DataFrame of its typed columns, `_file` and `_line`."""
    sources = list(dict.fromkeys(c.source for c in table.columns))
    raw, lines = _raw_columns(path, table.format, table.encoding, sources)
    if not lines:
        raise DataFormatError(path, None, None, "no rows: the file holds no data")
    by_source = dict(zip(sources, raw))
    frame = pd.DataFrame({c.name: _typed(by_source[c.source], lines, path, c)
                          for c in table.columns})
    frame[FILE] = path
    frame[LINE] = np.asarray(lines, np.int64)
    return frame


def _resolve(root, name):
    return name if os.path.isabs(name) else os.path.join(root, name)


def read_table(table, root):
    """A whole table: its files one after the other; for one file per split, a `_split`
    column says which. Then its key and `unique` columns are checked."""
    files = table.files
    if isinstance(files, dict):
        parts = []
        for split, name in files.items():
            part = read_file(_resolve(root, name), table)
            part[SPLIT] = split
            parts.append(part)
    else:
        names = [files] if isinstance(files, str) else files
        parts = [read_file(_resolve(root, name), table) for name in names]
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    for columns in ([table.key] if table.key else []), list(table.unique or ()):
        if columns:
            check_unique(frame, columns, table)
    return frame


def check_unique(frame, columns, table):
    """No two rows may share the values of `columns`; names both lines otherwise."""
    duplicated = frame.duplicated(subset=columns, keep="first").to_numpy()
    if duplicated.any():
        i = int(np.flatnonzero(duplicated)[0])
        row = frame.iloc[i]
        key = {c: row[c] for c in columns}
        same = (frame[columns] == pd.Series(key)).all(axis=1).to_numpy()
        first = frame.iloc[int(np.flatnonzero(same)[0])]
        sources = ", ".join(table.column(c).source for c in columns)
        what = ", ".join(f"{table.column(c).source}={_shown(v)}" for c, v in key.items())
        raise DataFormatError(row[FILE], int(row[LINE]), sources,
                              f"duplicate {what} (first at {first[FILE]}, line {first[LINE]})")


def check_references(frame, table, tables, frames):
    """Every value of a `references` column must be a key of the referenced table."""
    for column in table.columns:
        if column.references is None:
            continue
        target = tables[column.references]
        known = frames[column.references][target.key].to_numpy()
        values = frame[column.name].to_numpy()
        unknown = np.flatnonzero(~pd.Series(values).isin(known).to_numpy())
        if len(unknown):
            row = frame.iloc[int(unknown[0])]
            raise DataFormatError(row[FILE], int(row[LINE]), column.source,
                                  f"{_shown(values[unknown[0]])} is not a {target.key} of table "
                                  f"{column.references!r}")


def read_tables(spec, root):
    """Every table of a spec, read and cross-checked: {name: DataFrame}."""
    frames = {name: read_table(table, root) for name, table in spec.tables.items()}
    for name, table in spec.tables.items():
        check_references(frames[name], table, spec.tables, frames)
    return frames


def join_examples(spec, frames):
    """The examples table with its side tables joined on their keys, in example order."""
    rows = frames[spec.examples["table"]]
    for join in spec.examples["join"]:
        side = frames[join["table"]].drop(columns=[FILE, LINE, SPLIT], errors="ignore")
        merged = rows.merge(side, on=join["on"], how="left", validate="many_to_one",
                            indicator="_joined")
        missing = np.flatnonzero((merged["_joined"] == "left_only").to_numpy())
        if len(missing):
            row = merged.iloc[int(missing[0])]
            source = spec.tables[spec.examples["table"]].column(join["on"]).source
            raise DataFormatError(row[FILE], int(row[LINE]), source,
                                  f"{_shown(row[join['on']])} has no row in table "
                                  f"{join['table']!r}")
        rows = merged.drop(columns="_joined")
    return rows
