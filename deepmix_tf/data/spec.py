"""A dataset as data: one JSON (or YAML) file declares the source tables, how they join, the
split protocol, the task and the features. The build, the models, the trainer and the export
read only this declaration and the metadata the build writes; none of them names a column.

A spec file (every key is described in BUILD.md, "Dataset specs"):

    {
      "name": "my-clicks",
      "root": ".",                                   # files relative to this spec's folder
      "tables": {
        "events": {"files": "events.csv", "format": {"type": "csv"},
                   "columns": [{"name": "user", "dtype": "string"},
                               {"name": "price", "dtype": "float32", "optional": true},
                               {"name": "clicked", "dtype": "int64", "values": [0, 1]}]}},
      "examples": {"table": "events"},
      "split": {"type": "random", "seed": 42, "fractions": [0.8, 0.1, 0.1]},
      "task": {"name": "click", "type": "binary", "label": "clicked"},
      "features": [{"name": "user", "type": "categorical"},
                   {"name": "price", "type": "numeric", "transform": ["log1p", "standardize"]}]
    }

`load_spec` validates everything on load; a mistake is a `SpecError` naming the spec file and
the key path (`tables.events.columns[1].dtype`).
"""

import dataclasses
import json
import os

# "int64_list": a Parquet list<int64> column (a bag of ids, DLRM's indices per lookup).
DTYPES = ("int64", "float32", "string", "int64_list")
FORMATS = ("csv", "tsv", "delimited", "parquet")
FEATURE_TYPES = ("categorical", "numeric", "multi_hot")
SPLIT_TYPES = ("files", "random", "chronological", "ordered")
TRANSFORMS = ("log1p", "standardize")
POOLINGS = ("sum", "mean")
TASK_TYPES = ("regression", "binary", "multi_label")  # deepmix_tf.tasks implements them
SPLITS = ("train", "validation", "test")
# The specs shipped with the package: `load_spec("movielens1m-rating")` finds them by name.
BUILTIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "datasets")


class SpecError(ValueError):
    """A dataset spec that cannot be used: says which file and which key."""

    def __init__(self, path, key, message):
        self.path, self.key = str(path), key
        super().__init__(f"{path}: {key}: {message}" if key else f"{path}: {message}")


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of a source table, typed and checked when read.

    Args:
        name: str. The column's name in the pipeline.
        source: str. The column's name in the file (its header, or `format.names`);
            defaults to `name`.
        dtype: "int64", "float32", "string", or "int64_list" (Parquet list<int64>: a bag of
            ids, for a multi_hot feature).
        optional: bool. Empty values are allowed and become `missing`.
        missing: the value an empty field takes (0, 0.0 or "" by default).
        values: list or None. The only values allowed (for a `multi` column: each item).
        range: [low, high] or None. Allowed numeric range, inclusive (null: unbounded).
        multi: str or None. The column holds items joined by this separator.
        regex: str or None. The value is group 1 of this regular expression searched in the
            field; where it does not match, `missing` if the column is optional, else the
            whole field.
        references: str or None. Every value must be a key of this table.
    """

    name: str
    source: str = None
    dtype: str = "string"
    optional: bool = False
    missing: object = None
    values: tuple = None
    range: tuple = None
    multi: str = None
    regex: str = None
    references: str = None

    @property
    def fill(self):
        if self.missing is not None:
            return self.missing
        return "" if self.dtype == "string" else 0


@dataclasses.dataclass(frozen=True)
class Table:
    """A source table: one file, a list of files read one after the other, or one file per
    split (`{"train": ..., "validation": ..., "test": ...}`, for `split.type == "files"`)."""

    name: str
    files: object
    format: dict
    encoding: str
    columns: tuple
    key: str = None
    unique: tuple = None

    def column(self, name):
        return next(c for c in self.columns if c.name == name)


@dataclasses.dataclass(frozen=True)
class Feature:
    """One model input.

    Args:
        name: str. A column of the joined examples; the name in TFRecords, model inputs and
            the serving signature.
        type: "categorical" (vocabulary lookup or hashing, then an embedding), "numeric"
            (a float after `transform`) or "multi_hot" (a bag of items, separator-joined
            strings or an int64_list column, pooled from their embeddings).
        enabled: bool. Whether models use it by default (it is written either way).
        doc: str. What the value is (shown in the serving signature's documentation).
        prefix: int or None. Strings: only this many leading characters are used.
        vocabulary: dict. `min_count` (1), `max_size` (None), `num_oov_indices` (1),
            `hash_buckets` (None: a vocabulary from the training split; N: hash into N
            buckets, no vocabulary), `values` (a fixed list instead of one from the data),
            `identity` (int ids: id i in [0, identity) is row i, others are out of
            vocabulary; no vocabulary is counted).
        separator: multi_hot: the item separator.
        transform: numeric: steps applied in order: "log1p", "standardize" (with the
            training split's mean and standard deviation).
        clip: numeric: [low, high] applied before `transform` (null: unbounded).
        pooling: multi_hot: "sum" (default) or "mean" of the items' embeddings.
    """

    name: str
    type: str
    enabled: bool = True
    doc: str = ""
    prefix: int = None
    vocabulary: dict = None
    separator: str = None
    transform: tuple = ()
    clip: tuple = None
    pooling: str = "sum"


@dataclasses.dataclass(frozen=True)
class DenseTable:
    """A dense per-key table fed to models as extra numeric features (looked up by `key`).

    `derived` says how the build makes it; the only kind today is "interaction_graph"
    (`data.graph.interaction_graph_features`): statistics of who interacted with each item
    and how, and a spectral embedding of the item x user graph.
    """

    name: str
    key: str
    derived: dict


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A validated dataset spec (see the module docstring)."""

    name: str
    path: str
    root: str
    data_subdir: str
    protocol: str
    tables: dict
    examples: dict
    split: dict
    task: dict
    features: tuple
    dense_tables: tuple
    text: dict
    recommend: dict
    presets: str
    download: str
    raw: dict

    def feature(self, name):
        return next(f for f in self.features if f.name == name)

    def example_columns(self):
        """Every column of the joined examples: name -> (table, Column)."""
        out = {}
        for name in [self.examples["table"]] + [j["table"] for j in self.examples["join"]]:
            for column in self.tables[name].columns:
                out.setdefault(column.name, (name, column))
        return out

    def data_root(self, data_dir=None):
        """Where the spec's relative file names point."""
        if self.root is not None:
            return self.root
        from deepmix_tf.data import locate

        return os.path.join(locate.resolve_data_dir(data_dir), self.data_subdir or "")

    def source_files(self, data_dir=None):
        """Absolute paths of every file the spec reads, in declaration order."""
        root = self.data_root(data_dir)
        out = []
        for table in self.tables.values():
            files = table.files
            files = list(files.values()) if isinstance(files, dict) else (
                [files] if isinstance(files, str) else list(files))
            out += [f if os.path.isabs(f) else os.path.join(root, f) for f in files]
        return list(dict.fromkeys(out))


def builtin_specs():
    """Names of the specs shipped in `deepmix_tf/datasets/`."""
    return sorted(f[:-5] for f in os.listdir(BUILTIN_DIR) if f.endswith(".json"))


def spec_path(name_or_path):
    """A spec file: a path as given, else a shipped spec's name."""
    if os.path.isfile(name_or_path):
        return os.path.abspath(name_or_path)
    builtin = os.path.join(BUILTIN_DIR, f"{name_or_path}.json")
    if os.path.isfile(builtin):
        return builtin
    raise FileNotFoundError(f"no dataset spec {name_or_path!r}: not a file, and not one of the "
                            f"shipped specs {builtin_specs()}")


def load_spec(name_or_path):
    """Reads and validates a dataset spec (a path, or the name of a shipped spec)."""
    path = spec_path(name_or_path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise SpecError(path, None, "a YAML spec needs PyYAML (pip install pyyaml)") from None
        try:
            raw = yaml.load(text, Loader=_yaml_loader(yaml))
        except yaml.YAMLError as e:
            raise SpecError(path, None, f"not valid YAML: {e}") from None
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(path, None, f"not valid JSON: line {e.lineno}: {e.msg}") from None
    return parse_spec(raw, path)


def _yaml_loader(yaml):
    """PyYAML's safe loader with YAML 1.2's booleans: YAML 1.1 reads on/off/yes/no as
    booleans, and a join's key is `on`."""
    import re

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver("tag:yaml.org,2002:bool",
                                 re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                 list("tTfF"))
    return Loader


class _Checker:
    """Reads typed values out of nested dicts, naming the key path on error."""

    def __init__(self, path):
        self.path = path

    def fail(self, key, message):
        raise SpecError(self.path, key, message)

    def mapping(self, value, key, required=(), optional=()):
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping, got {type(value).__name__}")
        unknown = sorted(set(value) - set(required) - set(optional))
        if unknown:
            known = sorted(set(required) | set(optional))
            self.fail(key, f"unknown key(s) {unknown}; known: {known}")
        for name in required:
            if name not in value:
                self.fail(key, f"missing required key {name!r}")
        return value

    def typed(self, value, key, types, what):
        if isinstance(value, bool) and bool not in types:
            self.fail(key, f"expected {what}, got {value!r}")
        if not isinstance(value, types):
            self.fail(key, f"expected {what}, got {value!r}")
        return value

    def choice(self, value, key, choices):
        if value not in choices:
            self.fail(key, f"expected one of {list(choices)}, got {value!r}")
        return value

    def pair(self, value, key):
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or any(v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))
                       for v in value)):
            self.fail(key, f"expected [low, high] (numbers or null), got {value!r}")
        return tuple(value)


def _parse_column(c, value, key, table_names):
    c.mapping(value, key, ("name",), ("source", "dtype", "optional", "missing", "values",
                                      "range", "multi", "regex", "references", "doc"))
    name = c.typed(value["name"], f"{key}.name", str, "a column name")
    dtype = c.choice(value.get("dtype", "string"), f"{key}.dtype", DTYPES)
    values = value.get("values")
    if values is not None:
        c.typed(values, f"{key}.values", list, "a list of allowed values")
    refs = value.get("references")
    if refs is not None and refs not in table_names:
        c.fail(f"{key}.references", f"no table {refs!r}; tables: {sorted(table_names)}")
    if value.get("regex") is not None:
        import re

        try:
            if re.compile(value["regex"]).groups < 1:
                c.fail(f"{key}.regex", "needs a group: the value is group 1")
        except re.error as e:
            c.fail(f"{key}.regex", f"not a regular expression: {e}")
    missing = value.get("missing")
    if missing is not None:
        c.typed(missing, f"{key}.missing", str if dtype == "string" else (int, float),
                f"a {dtype} value")
    if values is not None and not all(isinstance(v, str) if dtype == "string" else (
            isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
        c.fail(f"{key}.values", f"every allowed value must be a {dtype} value")
    if "range" in value and dtype in ("string", "int64_list"):
        c.fail(f"{key}.range", "a range needs a numeric dtype")
    if dtype == "int64_list" and ("range" in value or values is not None):
        c.fail(f"{key}.dtype", "int64_list columns take no range or values")
    if value.get("multi") is not None and dtype != "string":
        c.fail(f"{key}.multi", "a multi-valued column is a string column")
    return Column(name=name, source=value.get("source", name), dtype=dtype,
                  optional=bool(value.get("optional", False)), missing=missing,
                  values=tuple(values) if values is not None else None,
                  range=c.pair(value["range"], f"{key}.range") if "range" in value else None,
                  multi=value.get("multi"), regex=value.get("regex"), references=refs)


def _parse_format(c, value, key):
    c.mapping(value, key, ("type",), ("header", "separator", "names"))
    kind = c.choice(value["type"], f"{key}.type", FORMATS)
    out = {"type": kind, "header": value.get("header", kind in ("csv", "tsv")),
           "separator": value.get("separator", {"csv": ",", "tsv": "\t"}.get(kind)),
           "names": value.get("names")}
    if kind == "delimited" and not out["separator"]:
        c.fail(f"{key}.separator", "a delimited format needs a separator")
    if kind in ("csv", "tsv") and len(out["separator"] or "") != 1:
        c.fail(f"{key}.separator", "csv and tsv take a one-character separator; use "
                                   "\"delimited\" for longer ones")
    if kind != "parquet" and not out["header"] and not out["names"]:
        c.fail(f"{key}.names", "a file without a header needs the list of its column names")
    return out


def parse_spec(raw, path="<spec>"):
    """Validates a spec given as plain data (see `load_spec`)."""
    c = _Checker(path)
    c.mapping(raw, "", ("name", "tables", "examples", "task", "features"),
              ("description", "root", "data_subdir", "protocol", "split", "dense_tables", "text",
               "recommend", "presets", "download"))
    tables = {}
    names = c.mapping(raw["tables"], "tables", (), tuple(raw["tables"]) if isinstance(
        raw["tables"], dict) else ())
    for tname, t in names.items():
        key = f"tables.{tname}"
        c.mapping(t, key, ("files", "format", "columns"), ("encoding", "key", "unique"))
        files = t["files"]
        if isinstance(files, dict):
            c.mapping(files, f"{key}.files", SPLITS)
        elif not (isinstance(files, str) or (isinstance(files, list) and files
                                             and all(isinstance(f, str) for f in files))):
            c.fail(f"{key}.files", "expected a file name, a list of them, or one per split")
        columns = tuple(_parse_column(c, col, f"{key}.columns[{i}]", set(names))
                        for i, col in enumerate(c.typed(t["columns"], f"{key}.columns", list,
                                                        "a list of columns")))
        column_names = [col.name for col in columns]
        if len(set(column_names)) != len(column_names):
            c.fail(f"{key}.columns", f"repeated column names in {column_names}")
        for k in ("key",):
            if t.get(k) is not None and t[k] not in column_names:
                c.fail(f"{key}.{k}", f"no column {t[k]!r}; columns: {column_names}")
        unique = t.get("unique")
        if unique is not None and not set(unique) <= set(column_names):
            c.fail(f"{key}.unique", f"names columns that are not in {column_names}")
        fmt = _parse_format(c, t["format"], f"{key}.format")
        if fmt["names"]:
            absent = [col.source for col in columns if col.source not in fmt["names"]]
            if absent:
                c.fail(f"{key}.format.names", f"lacks the source column(s) {absent}")
        tables[tname] = Table(tname, files, fmt, t.get("encoding", "utf-8"), columns,
                              t.get("key"), tuple(unique) if unique else None)

    examples = c.mapping(raw["examples"], "examples", ("table",), ("join",))
    if examples["table"] not in tables:
        c.fail("examples.table", f"no table {examples['table']!r}; tables: {sorted(tables)}")
    joins = []
    seen = {col.name: col for col in tables[examples["table"]].columns}
    for i, j in enumerate(examples.get("join", [])):
        c.mapping(j, f"examples.join[{i}]", ("table", "on"))
        if j["table"] not in tables or tables[j["table"]].key != j["on"]:
            c.fail(f"examples.join[{i}]", f"joins need a table whose key is {j['on']!r}")
        if j["on"] not in seen:
            c.fail(f"examples.join[{i}].on", f"{j['on']!r} is not a column of the examples "
                                             "joined so far")
        if seen[j["on"]].dtype != tables[j["table"]].column(j["on"]).dtype:
            c.fail(f"examples.join[{i}].on", f"{j['on']!r} has another dtype in table "
                                             f"{j['table']!r}")
        for col in tables[j["table"]].columns:
            seen.setdefault(col.name, col)
        joins.append({"table": j["table"], "on": j["on"]})
    examples = {"table": examples["table"], "join": joins}

    split = c.mapping(raw.get("split", {"type": "files"}), "split", ("type",),
                      ("seed", "fractions", "key", "time"))
    c.choice(split["type"], "split.type", SPLIT_TYPES)
    split = {"seed": 42, "fractions": [0.8, 0.1, 0.1], **split}
    fractions = split["fractions"]
    if (not isinstance(fractions, list) or len(fractions) != 3
            or not all(isinstance(x, (int, float)) and x > 0 for x in fractions)):
        c.fail("split.fractions", f"expected 3 positive proportions (train, validation, test), "
                                  f"got {fractions!r}")
    split["fractions"] = [x / sum(fractions) for x in fractions]
    example_table = tables[examples["table"]]
    if (split["type"] == "files") != isinstance(example_table.files, dict):
        c.fail("split.type", f"'files' is the split type exactly when the examples table "
                             f"({examples['table']}) has one file per split")
    if split["type"] == "chronological":
        for k in ("key", "time"):
            if split.get(k) not in [col.name for col in example_table.columns]:
                c.fail(f"split.{k}", f"expected a column of table {examples['table']!r}")
        time = example_table.column(split["time"])
        if time.dtype != "int64" or (time.optional and time.fill > 0):
            c.fail("split.time", "the time column must be int64, and an empty time's missing "
                                 "value (0 by default) must sort before every real time")

    spec_columns, column_tables = {}, {}
    for tname in [examples["table"]] + [j["table"] for j in joins]:
        for col in tables[tname].columns:
            if col.name in spec_columns and tname != examples["table"] and col.name not in [
                    j["on"] for j in joins if j["table"] == tname]:
                c.fail(f"tables.{tname}.columns", f"column {col.name!r} is already in the "
                                                  "examples; joined columns need new names")
            spec_columns.setdefault(col.name, col)
            column_tables.setdefault(col.name, tname)

    task = c.mapping(raw["task"], "task", ("type", "label"), ("name", "range", "classes",
                                                             "separator"))
    c.choice(task["type"], "task.type", TASK_TYPES)
    if task["label"] not in spec_columns:
        c.fail("task.label", f"no column {task['label']!r} in the examples")
    task = {"name": task.get("name", task["type"]), **task}
    label = spec_columns[task["label"]]
    if task["type"] in ("regression", "binary") and (label.dtype == "string" or label.optional):
        c.fail("task.label", f"a {task['type']} label must be a numeric column that is not "
                             "optional")
    if task["type"] == "binary" and (label.values is None or set(label.values) - {0, 1}):
        c.fail("task.label", f"declare the binary label's values: \"values\": [0, 1] on "
                             f"column {task['label']!r}")
    if task["type"] == "multi_label":
        label = spec_columns[task["label"]]
        task.setdefault("classes", list(label.values or []))
        task.setdefault("separator", label.multi)
        if label.values is None or set(label.values) != set(task["classes"]):
            c.fail("task.classes", f"the label column {task['label']!r} must declare its "
                                   "values, the classes, so that the build checks each item")
        if not task["classes"] or not task["separator"]:
            c.fail("task", "a multi_label task needs its classes and separator (task.classes, "
                           "task.separator, or the label column's values and multi)")
    if task["type"] == "regression" and "range" in task:
        task["range"] = list(c.pair(task["range"], "task.range"))

    features = []
    for i, f in enumerate(c.typed(raw["features"], "features", list, "a list of features")):
        key = f"features[{i}]"
        c.mapping(f, key, ("name", "type"), ("enabled", "doc", "prefix", "vocabulary",
                                             "separator", "transform", "clip", "pooling"))
        if f["name"] not in spec_columns:
            c.fail(f"{key}.name", f"no column {f['name']!r} in the joined examples")
        if f["name"] == task["label"]:
            c.fail(f"{key}.name", f"{f['name']!r} is the label: it may not be an input")
        kind = c.choice(f["type"], f"{key}.type", FEATURE_TYPES)
        column = spec_columns[f["name"]]
        if kind == "numeric" and column.dtype == "string":
            c.fail(f"{key}.type", f"column {f['name']!r} is a string; numeric needs a number")
        if kind == "multi_hot" and column.dtype not in ("string", "int64_list"):
            c.fail(f"{key}.type", f"multi_hot needs a string or int64_list column, "
                                  f"{f['name']!r} is {column.dtype}")
        if kind != "multi_hot" and column.dtype == "int64_list":
            c.fail(f"{key}.type", f"column {f['name']!r} is an int64_list: multi_hot only")
        if (column.dtype == "int64_list"
                and tables[column_tables[f["name"]]].format["type"] != "parquet"):
            c.fail(f"{key}.name", f"int64_list column {f['name']!r} needs a Parquet table")
        if kind == "categorical" and column.dtype == "float32":
            c.fail(f"{key}.type", f"categorical needs an int64 or string column, {f['name']!r} "
                                  "is float32")
        prefix = f.get("prefix")
        if prefix is not None and (kind != "categorical" or column.dtype != "string" or
                                   isinstance(prefix, bool) or not isinstance(prefix, int)
                                   or prefix < 1):
            c.fail(f"{key}.prefix", "a prefix is a positive int, for string categoricals")
        vocabulary = c.mapping(f.get("vocabulary", {}), f"{key}.vocabulary", (),
                               ("min_count", "max_size", "num_oov_indices", "hash_buckets",
                                "values", "identity"))
        vocabulary = {"min_count": 1, "max_size": None,
                      "num_oov_indices": 0 if kind == "multi_hot" else 1,
                      "hash_buckets": None, "values": None, "identity": None, **vocabulary}
        for option in ("min_count", "max_size", "hash_buckets", "identity"):
            v = vocabulary[option]
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                c.fail(f"{key}.vocabulary.{option}", f"expected a positive int, got {v!r}")
        oov = vocabulary["num_oov_indices"]
        if isinstance(oov, bool) or not isinstance(oov, int) or oov < (kind == "categorical"):
            c.fail(f"{key}.vocabulary.num_oov_indices", f"expected an int >= "
                   f"{int(kind == 'categorical')} (unseen values need a row), got {oov!r}")
        if vocabulary["hash_buckets"] is not None and kind != "categorical":
            c.fail(f"{key}.vocabulary.hash_buckets", "only categorical features hash")
        if vocabulary["identity"] is not None and (
                column.dtype not in ("int64", "int64_list") or vocabulary["hash_buckets"]
                or vocabulary["values"] is not None):
            c.fail(f"{key}.vocabulary.identity", "identity ids are for int64 and int64_list "
                                                 "columns, without hash_buckets or values")
        if column.dtype == "int64_list" and vocabulary["identity"] is None:
            c.fail(f"{key}.vocabulary.identity", "an int64_list bag needs its id range: "
                                                 "\"vocabulary\": {\"identity\": m}")
        if vocabulary["values"] is None and kind == "multi_hot" and column.values:
            vocabulary["values"] = list(column.values)
        transform = tuple(f.get("transform", ()))
        for step in transform:
            c.choice(step, f"{key}.transform", TRANSFORMS)
        if transform and kind != "numeric":
            c.fail(f"{key}.transform", "only numeric features take a transform")
        separator = f.get("separator", column.multi if kind == "multi_hot" else None)
        pooling = c.choice(f.get("pooling", "sum"), f"{key}.pooling", POOLINGS)
        if "pooling" in f and kind != "multi_hot":
            c.fail(f"{key}.pooling", "only multi_hot features pool")
        if kind == "multi_hot" and not separator and column.dtype == "string":
            c.fail(f"{key}.separator", "a multi_hot feature needs its item separator")
        features.append(Feature(
            name=f["name"], type=kind, enabled=bool(f.get("enabled", True)),
            doc=f.get("doc", ""), prefix=prefix, vocabulary=vocabulary,
            separator=separator, transform=transform,
            clip=c.pair(f["clip"], f"{key}.clip") if "clip" in f else None, pooling=pooling))
    if len({f.name for f in features}) != len(features):
        c.fail("features", "a feature is declared twice")

    dense_tables = []
    for i, d in enumerate(raw.get("dense_tables", [])):
        key = f"dense_tables[{i}]"
        c.mapping(d, key, ("name", "key", "derived"))
        if d["key"] not in spec_columns:
            c.fail(f"{key}.key", f"no column {d['key']!r} in the examples")
        derived = c.mapping(d["derived"], f"{key}.derived", ("type", "interactions", "items"),
                            ("users", "user", "item", "value", "values", "user_shares",
                             "splits", "svd_dim", "seed"))
        c.choice(derived["type"], f"{key}.derived.type", ("interaction_graph",))
        for k in ("interactions", "items", "users"):
            if derived.get(k) is not None and derived[k] not in tables:
                c.fail(f"{key}.derived.{k}", f"no table {derived[k]!r}")
        if not (isinstance(d["name"], str) and d["name"].replace("_", "").isalnum()):
            c.fail(f"{key}.name", "a name of letters, digits and '_' (it names a file)")
        if spec_columns[d["key"]].dtype != "int64":
            c.fail(f"{key}.key", "dense tables are keyed by int64 ids")
        derived = {"item": d["key"], "value": None, "values": [], "user_shares": {},
                   "splits": "all", "svd_dim": 32, "seed": split["seed"], "users": None,
                   **derived}
        c.choice(derived["splits"], f"{key}.derived.splits", ("all", "train"))
        if derived["splits"] == "train" and derived["interactions"] != examples["table"]:
            c.fail(f"{key}.derived.splits", "only the examples table has a training split")
        items = tables[derived["items"]]
        if items.key is None or items.column(items.key).dtype != "int64":
            c.fail(f"{key}.derived.items", "the items table needs an int64 key")
        interaction_columns = [col.name for col in tables[derived["interactions"]].columns]
        for k in ("user", "item", "value"):
            if k == "user" and k not in derived:
                c.fail(f"{key}.derived", "missing required key 'user'")
            if derived[k] is not None and derived[k] not in interaction_columns:
                c.fail(f"{key}.derived.{k}", f"no column {derived[k]!r} in table "
                                             f"{derived['interactions']!r}")
        if derived["user_shares"]:
            if derived["users"] is None:
                c.fail(f"{key}.derived.users", "user_shares need the users table")
            user_columns = [col.name for col in tables[derived["users"]].columns]
            for column in derived["user_shares"]:
                if column not in user_columns:
                    c.fail(f"{key}.derived.user_shares", f"no column {column!r} in table "
                                                         f"{derived['users']!r}")
        v = derived["svd_dim"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            c.fail(f"{key}.derived.svd_dim", f"expected a positive int, got {v!r}")
        dense_tables.append(DenseTable(d["name"], d["key"], derived))

    text = raw.get("text")
    if text is not None:
        c.mapping(text, "text", ("table", "key", "fields"))
        if text["table"] not in tables:
            c.fail("text.table", f"no table {text['table']!r}")
        if text["key"] not in [col.name for col in tables[text["table"]].columns]:
            c.fail("text.key", f"no column {text['key']!r} in table {text['table']!r}")
        if task["label"] in text["fields"]:
            c.fail("text.fields", f"{task['label']!r} is the label: the item text may not "
                                  "carry it")
    recommend = _parse_recommend(c, raw.get("recommend"), tables, examples, task)
    spec_dir = os.path.dirname(os.path.abspath(path)) if path != "<spec>" else os.getcwd()
    root = raw.get("root")
    if root is not None and not os.path.isabs(root):
        root = os.path.normpath(os.path.join(spec_dir, root))
    return DatasetSpec(
        name=c.typed(raw["name"], "name", str, "a name"), path=str(path), root=root,
        data_subdir=raw.get("data_subdir"), protocol=raw.get("protocol", split["type"]),
        tables=tables, examples=examples, split=split, task=task, features=tuple(features),
        dense_tables=tuple(dense_tables), text=text, recommend=recommend,
        presets=raw.get("presets"),
        download=raw.get("download"), raw=raw)


def _parse_recommend(c, value, tables, examples, task):
    """`recommend`: {"items": a joined table with a key (the catalogue), "user": the examples'
    column that names a user, "relevant_at_least": the label value from which a held-out
    example counts as relevant in ranking evaluation (binary tasks: 1)}."""
    if value is None:
        return None
    c.mapping(value, "recommend", ("items", "user"), ("relevant_at_least",))
    joined = {j["table"]: j["on"] for j in examples["join"]}
    if value["items"] not in joined:
        c.fail("recommend.items", f"{value['items']!r} is not a table joined to the examples "
                                  f"(joined: {sorted(joined)})")
    columns = [col.name for name in [examples["table"]] + list(joined)
               for col in tables[name].columns]
    if value["user"] not in columns:
        c.fail("recommend.user", f"no column {value['user']!r} in the joined examples")
    if value["user"] in [col.name for col in tables[value["items"]].columns]:
        c.fail("recommend.user", f"{value['user']!r} is a column of the item table")
    if task["type"] not in ("regression", "binary"):
        c.fail("recommend", f"recommendations rank by a score: a {task['type']} task has none")
    relevant = value.get("relevant_at_least", 1 if task["type"] == "binary" else None)
    if isinstance(relevant, bool) or not isinstance(relevant, (int, float)):
        c.fail("recommend.relevant_at_least", f"expected a number, got {relevant!r}")
    return {"items": value["items"], "key": joined[value["items"]], "user": value["user"],
            "relevant_at_least": relevant}


# The shipped MovieLens specs by the names of the older command-line flags.
MOVIELENS = {
    ("rating", "rel-movielens1m"): "movielens1m-rating",
    ("genre", "rel-movielens1m"): "movielens1m-genre",
    ("rating", "chronological"): "ml-1m-rating-chronological",
    ("rating", "random"): "ml-1m-rating-random",
    ("genre", "chronological"): "ml-1m-genre",
    ("genre", "random"): "ml-1m-genre",
}


def movielens_spec(task, protocol="rel-movielens1m"):
    """The shipped spec of a MovieLens task and protocol (`--task`, `--protocol`)."""
    try:
        return MOVIELENS[(task, protocol)]
    except KeyError:
        raise ValueError(f"no MovieLens spec for task {task!r} and protocol {protocol!r}; "
                         f"known: {sorted(MOVIELENS)}") from None
