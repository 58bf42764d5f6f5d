"""Generated datasets in the shape of DLRM's benchmark data: dense features and bags of
categorical indices, with a label that is random or planted from a declared truth.

Two kinds of index distributions:

- random: every index of a table equally likely (DLRM's `--data-generation=random`);
- synthetic: indices drawn from per-field frequencies, fitted to a real dataset
  (`fit_frequencies`, `fit_build`) or Zipf-like (`zipf_probabilities`), so that embedding
  lookups and caches behave as on real data.

Indices are distinct within a bag, so a bag of k holds k indices (DLRM's generator drops
duplicates silently). A planted label (`Planted`) is a known function of chosen fields, field
pairs and dense columns plus noise, so that feature and interaction search can be checked
against the truth.

    fields = [Field(f"cat_{j}", 100_000, k=3, probabilities=zipf_probabilities(100_000, 1.05))
              for j in range(8)]
    gen = Generator(fields, num_dense=13, planted=Planted(fields={"cat_0": 1.0},
                                                          pairs=[["cat_1", "cat_2", 2.0]]))
    for chunk in gen.chunks(45_000_000):          # bounded memory
        ...
    write_dataset("/tmp/gen", gen, 1_000_000)     # Parquet splits + spec.json + truth.json

A chunk is a dict: `dense` float32 (n, num_dense); `bags` {field: int64 (n, k_max), padded
with -1 on the right, the indices of a bag sorted}; `lengths` {field: int32 (n,)}; `label`
float32 (n,). Rows are generated in blocks of `BLOCK_ROWS`, each seeded from (seed, block
index), so row i is the same however the rows are consumed (one chunk or many, any sizes).

Only numpy at import; pyarrow when writing; TensorFlow only in `fit_build`.
"""

import dataclasses
import json
import os
import time
import zlib

import numpy as np

BLOCK_ROWS = 8192
DEFAULT_CHUNK_ROWS = 262144
MAX_ROUNDS = 1000
CALIBRATION_BLOCKS = 4
CRITEO_DENSE, CRITEO_CATEGORICAL = 13, 26
# Means of Criteo-shaped integer columns: geometric counts from about 1 to 1000.
CRITEO_MEANS = np.geomspace(1.0, 1000.0, CRITEO_DENSE)
_PAD = np.iinfo(np.int64).max
_HEX_PAIRS = np.frombuffer(b"".join(b"%02x" % i for i in range(256)), np.uint16)


# ------------------------------------------------------------------------------- fields


def zipf_probabilities(m, exponent=1.05):
    """Zipf-like frequencies over [0, m): value i has probability proportional to
    (i + 1) ** -exponent (value 0 is the most frequent).

    Args:
        m: int. Number of values (table rows).
        exponent: float >= 0. 0 is uniform; about 1 is typical of click logs.

    Returns:
        float64 (m,) summing to 1.
    """
    if m < 1 or exponent < 0:
        raise ValueError(f"need m >= 1 and exponent >= 0, got m={m}, exponent={exponent}")
    p = np.arange(1, m + 1, dtype=np.float64) ** -float(exponent)
    return p / p.sum()


def fit_frequencies(values, num_rows=None):
    """The empirical distribution of observed indices of one field.

    Args:
        values: int array of any shape. Observed indices; negative ones (padding, missing)
            are ignored.
        num_rows: int or None. The table size m (default: the largest index + 1).

    Returns:
        float64 (m,): each value's share of the observations (0 for values never seen).
    """
    values = np.asarray(values, np.int64).ravel()
    values = values[values >= 0]
    if not len(values):
        raise ValueError("no observed values (all negative or empty) to fit frequencies to")
    m = int(values.max()) + 1 if num_rows is None else int(num_rows)
    if values.max() >= m:
        raise ValueError(f"index {int(values.max())} is outside [0, {m})")
    counts = np.bincount(values, minlength=m).astype(np.float64)
    return counts / counts.sum()


@dataclasses.dataclass(frozen=True, eq=False)
class Field:
    """One categorical field: bags of distinct indices into a table of `size` rows.

    Args:
        name: str. The field's name (`cat_j` by convention).
        size: int. Table rows m; indices are in [0, m).
        k: int. Indices per bag, when `k_max` is None.
        k_max: int or None. If set, each bag's length is drawn uniformly from [1, k_max].
        probabilities: float array (m,) or None. Index frequencies (None: uniform).
        doc: str. Where the field comes from (kept in the spec's feature doc).
    """

    name: str
    size: int
    k: int = 1
    k_max: int = None
    probabilities: np.ndarray = None
    doc: str = ""

    def __post_init__(self):
        if self.size < 1 or self.k < 1 or (self.k_max is not None and self.k_max < 1):
            raise ValueError(f"field {self.name}: size, k and k_max must be >= 1")
        if self.width > self.size:
            raise ValueError(f"field {self.name}: bags of {self.width} distinct indices "
                             f"need at least as many table rows, the table has {self.size}")
        if self.probabilities is not None:
            p = np.asarray(self.probabilities, np.float64)
            if p.shape != (self.size,) or not np.isfinite(p).all() or (p < 0).any() \
                    or p.sum() <= 0:
                raise ValueError(f"field {self.name}: probabilities must be {self.size} "
                                 "finite non-negative numbers with a positive sum")
            support = int(np.count_nonzero(p))
            if support < self.width:
                raise ValueError(f"field {self.name}: only {support} values have non-zero "
                                 f"probability, fewer than the {self.width} distinct indices "
                                 "a bag needs")
            object.__setattr__(self, "probabilities", p)

    @property
    def width(self):
        """The padded bag width: k_max if set, else k."""
        return self.k_max if self.k_max is not None else self.k


def make_fields(tables, k=1, k_max=None, probabilities=None):
    """Fields `cat_0, cat_1, ...`, one per table size.

    Args:
        tables: list of int. Table sizes m.
        k, k_max: bag lengths (see `Field`).
        probabilities: None (uniform: kind "random"), a float exponent (Zipf, kind
            "synthetic"), or a list of probability vectors, one per table.
    """
    out, zipf = [], {}
    for j, m in enumerate(tables):
        if probabilities is None or isinstance(probabilities, (list, tuple)):
            p = None if probabilities is None else probabilities[j]
        else:  # one array per size: fields of a size then share a `Sampler` (and caches)
            if m not in zipf:
                zipf[m] = zipf_probabilities(m, probabilities)
            p = zipf[m]
        out.append(Field(f"cat_{j}", int(m), k=k, k_max=k_max, probabilities=p))
    return out


class Sampler:
    """Draws indices of one table: uniform, or by inverse CDF of given probabilities.

    The inverse CDF is `np.searchsorted(cdf, u, side="right")`; a guide table of m
    buckets (the first candidate index of each 1/m of probability) narrows each search to a
    few values, which keeps large tables fast. Values of zero probability are never drawn.
    """

    def __init__(self, size, probabilities=None):
        self.size = int(size)
        self.cdf = self.guide = None
        if probabilities is not None:
            p = np.asarray(probabilities, np.float64)
            cdf = np.cumsum(p)
            cdf /= cdf[-1]
            cdf[np.flatnonzero(p)[-1]:] = 1.0  # no rounding gap after the last real value
            self.cdf = cdf
            grid = np.arange(self.size + 1, dtype=np.float64) / self.size
            guide = np.searchsorted(cdf, grid, side="right")
            self.guide = np.minimum(guide, self.size - 1).astype(
                np.int32 if self.size < 2 ** 31 else np.int64)

    def quantile(self, u):
        """The index of each uniform u in [0, 1): the first with cdf > u."""
        u = np.asarray(u, np.float64)
        if self.cdf is None:
            return np.minimum((u * self.size).astype(np.int64), self.size - 1)
        n = self.size
        j = np.minimum((u * n).astype(np.int64), n - 1)
        j -= j / n > u          # exact bucket despite rounding of u * n
        j += (j + 1) / n <= u
        np.clip(j, 0, n - 1, out=j)
        lo = self.guide[j].astype(np.int64)
        hi = self.guide[j + 1].astype(np.int64)
        todo = np.flatnonzero(lo < hi)
        low, high, target = lo[todo], hi[todo], u[todo]
        while len(todo):        # bisection in [low, high]: cdf[high] > u holds throughout
            mid = (low + high) >> 1
            above = self.cdf[mid] > target
            high = np.where(above, mid, high)
            low = np.where(above, low, mid + 1)
            done = low >= high
            if done.any():
                lo[todo[done]] = low[done]
                keep = ~done
                todo, low, high, target = todo[keep], low[keep], high[keep], target[keep]
        return lo

    def draw(self, rng, n):
        """n indices, int64."""
        if self.cdf is None:
            return rng.integers(0, self.size, n, dtype=np.int64)
        return self.quantile(rng.random(n))


def sample_bags(rng, n, field, sampler=None, max_rounds=MAX_ROUNDS):
    """n bags of distinct indices of one field.

    Draws every position, sorts each bag, redraws only the positions that repeat the value
    before them, and repeats until no bag has a duplicate.

    Args:
        rng: `np.random.Generator`.
        n: int. Number of bags.
        field: `Field`.
        sampler: `Sampler` of the field (built when None).
        max_rounds: int. Redraw rounds before giving up with ValueError.

    Returns:
        (bags int64 (n, field.width) sorted per bag, padded with -1 on the right,
         lengths int32 (n,)).
    """
    sampler = sampler or Sampler(field.size, field.probabilities)
    width = field.width
    if field.k_max is None:
        lengths = np.full(n, field.k, np.int32)
    else:
        lengths = rng.integers(1, field.k_max + 1, n, dtype=np.int32)
    x = sampler.draw(rng, n * width).reshape(n, width)
    if width == 1:
        return x, lengths
    pad = np.arange(width) >= lengths[:, None]
    x[pad] = _PAD
    x.sort(axis=1)
    rows, sub = np.arange(n), x
    for _ in range(max_rounds):
        dup = np.zeros(sub.shape, bool)
        dup[:, 1:] = (sub[:, 1:] == sub[:, :-1]) & (sub[:, 1:] != _PAD)
        again = dup.any(axis=1)
        if not again.any():
            break
        rows, sub, dup = rows[again], sub[again], dup[again]
        sub[dup] = sampler.draw(rng, int(dup.sum()))
        sub.sort(axis=1)
        x[rows] = sub
    else:
        raise ValueError(f"field {field.name}: {len(rows)} bag(s) still had repeated indices "
                         f"after {max_rounds} redraw rounds: the distribution is too "
                         f"concentrated for bags of {width} distinct indices; lower k/k_max")
    x[pad] = -1
    return x, lengths


# ------------------------------------------------------------------------------- planted


@dataclasses.dataclass(frozen=True)
class Planted:
    """A label planted from a declared function of the features.

    Each categorical field of the truth gets a random value per index, drawn from `seed` and
    the field's name: a scalar for main effects, a `dim`-vector for pairs. A bag's value is
    the mean over its indices. With dense columns standardised (uniform: (x - 0.5) * sqrt(12)),

        logit = sum_f w_f * bag_scalar_f + sum_(a, b, w) w * <bag_vector_a, bag_vector_b>
                + sum_i w_i * dense_i + sum_(i, low, high, w) w * [low <= raw dense_i < high]
                + N(0, noise^2)

    binary label ~ Bernoulli(sigmoid(logit - offset)), the offset set so the positive rate is
    `base_rate`; regression label = logit. Fields not named carry no signal.

    Args:
        fields: {field name: weight}. Main effects.
        pairs: [[field a, field b, weight], ...]. Interactions.
        dense: {dense column index or name (`dense_i`): weight}.
        bands: [[dense column index or name, low, high, weight], ...]: non-monotonic
            effects, `weight` where the raw value lies in [low, high) (for checking
            learned embeddings of numeric fields, e.g. AutoDis).
        noise: float. Standard deviation of the noise added to the logit.
        kind: "binary" or "regression".
        base_rate: float in (0, 1). Binary: the target share of positives.
        dim: int. Size of the per-index vectors of pair effects.
        shared_vectors: bool. True: a field has one vector per index for all its pairs.
            False: one per pair (the pair's `<bag_vector_a, bag_vector_b>` uses vectors
            drawn for that pair), so that a field in k pairs carries k * dim numbers per
            index (for checking that a dimension search widens a busy field).
        seed: int. Seeds the per-index values (independent of the data's seed).
    """

    fields: dict = dataclasses.field(default_factory=dict)
    pairs: tuple = ()
    dense: dict = dataclasses.field(default_factory=dict)
    bands: tuple = ()
    noise: float = 0.1
    kind: str = "binary"
    base_rate: float = 0.5
    dim: int = 4
    shared_vectors: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.kind not in ("binary", "regression"):
            raise ValueError(f"planted kind must be 'binary' or 'regression', got {self.kind!r}")
        if not 0 < self.base_rate < 1 or self.noise < 0 or self.dim < 1:
            raise ValueError("planted: need 0 < base_rate < 1, noise >= 0 and dim >= 1")
        pairs = tuple((str(a), str(b), float(w)) for a, b, w in self.pairs)
        object.__setattr__(self, "pairs", pairs)
        object.__setattr__(self, "fields", {str(k): float(v) for k, v in self.fields.items()})
        dense = {(v if isinstance(v, str) and v.startswith("dense_") else f"dense_{int(v)}"):
                 float(w) for v, w in self.dense.items()}
        object.__setattr__(self, "dense", dense)
        bands = tuple((v if isinstance(v, str) and v.startswith("dense_") else f"dense_{int(v)}",
                       float(low), float(high), float(w)) for v, low, high, w in self.bands)
        if any(not low < high for _, low, high, _ in bands):
            raise ValueError(f"planted bands need low < high, got {self.bands}")
        object.__setattr__(self, "bands", bands)

    @classmethod
    def parse(cls, value):
        """A `Planted` from itself, a dict, inline JSON text, or a JSON file's path."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            if os.path.isfile(value):
                with open(value, encoding="utf-8") as f:
                    value = json.load(f)
            else:
                value = json.loads(value)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"planted: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**value)

    def to_dict(self):
        """JSON-serialisable form (what `parse` reads back)."""
        return {"fields": dict(self.fields), "pairs": [list(p) for p in self.pairs],
                "dense": dict(self.dense), "bands": [list(b) for b in self.bands],
                "noise": self.noise, "kind": self.kind,
                "base_rate": self.base_rate, "dim": self.dim,
                "shared_vectors": self.shared_vectors, "seed": self.seed}


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _offset_for_rate(z, rate):
    """The c with mean(sigmoid(z - c)) == rate, by bisection."""
    low, high = float(z.min()) - 60.0, float(z.max()) + 60.0
    for _ in range(100):
        mid = 0.5 * (low + high)
        if _sigmoid(z - mid).mean() > rate:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def _bag_mean(table, bags, lengths):
    """Mean of `table` rows over each bag's valid indices: (n,) or (n, d)."""
    valid = bags >= 0
    values = table[np.where(valid, bags, 0)]
    mask = valid if table.ndim == 1 else valid[..., None]
    total = np.where(mask, values, 0).sum(axis=1)
    denom = lengths if table.ndim == 1 else lengths[:, None]
    return total / np.maximum(denom, 1)


# ------------------------------------------------------------------------------- generator


class Generator:
    """Rows of a generated dataset, reproducible from a seed.

    Args:
        fields: list of `Field`.
        num_dense: int. Dense columns `dense_0, ...` (may be 0).
        dense_dist: "uniform" ([0, 1)) or "normal" (standard normal).
        planted: `Planted`, its dict/JSON form, or None (labels Bernoulli(0.5)).
        seed: int. Seeds the data; block b of rows uses (seed, b).
        max_rounds: int. Redraw rounds for distinct bags (see `sample_bags`).

    Attributes (planted): `effects` {field: {"scalar": (m,), "vector": (m, dim), or with
    `shared_vectors` off "vector_<j>" for its j-th pair}}, the
    per-index values of the truth; `offset`, the binary logit's centring; `truth`.
    """

    def __init__(self, fields, num_dense=13, dense_dist="uniform", planted=None, seed=0,
                 max_rounds=MAX_ROUNDS):
        self.fields = list(fields)
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"repeated field names in {names}")
        if dense_dist not in ("uniform", "normal"):
            raise ValueError(f"dense_dist must be 'uniform' or 'normal', got {dense_dist!r}")
        self.num_dense, self.dense_dist = int(num_dense), dense_dist
        self.seed, self.max_rounds = int(seed), max_rounds
        shared = {}  # fields with the same size and probability array share a sampler
        for f in self.fields:
            key = (f.size, id(f.probabilities))
            if key not in shared:
                shared[key] = Sampler(f.size, f.probabilities)
        self.samplers = [shared[(f.size, id(f.probabilities))] for f in self.fields]
        self.planted = None if planted is None else Planted.parse(planted)
        self.offset = 0.0
        self.effects = {}
        if self.planted is not None:
            self._plant()

    @property
    def dense_names(self):
        return [f"dense_{i}" for i in range(self.num_dense)]

    @property
    def label_kind(self):
        return self.planted.kind if self.planted else "binary"

    # -- planted truth

    def _plant(self):
        p, index = self.planted, {f.name: f for f in self.fields}
        for name in list(p.fields) + [x for a, b, _ in p.pairs for x in (a, b)]:
            if name not in index:
                raise ValueError(f"planted: no field {name!r}; fields: {sorted(index)}")
        for name in list(p.dense) + [b[0] for b in p.bands]:
            if name not in self.dense_names:
                raise ValueError(f"planted: no dense column {name!r} ({self.num_dense} dense)")
        for name in dict.fromkeys(list(p.fields) + [x for a, b, _ in p.pairs for x in (a, b)]):
            size, effect = index[name].size, {}
            salt = zlib.crc32(name.encode())
            if name in p.fields:
                effect["scalar"] = np.random.default_rng([p.seed, salt, 0]).standard_normal(size)
            for j, (a, b, _) in enumerate(p.pairs):
                if name not in (a, b) or (p.shared_vectors and "vector" in effect):
                    continue
                stream = [p.seed, salt, 1] + ([] if p.shared_vectors else [j])
                vector = np.random.default_rng(stream).standard_normal((size, p.dim))
                vector *= p.dim ** -0.25  # unit variance inner products
                effect["vector" if p.shared_vectors else f"vector_{j}"] = vector
            self.effects[name] = effect
        if p.kind == "binary":
            z = np.concatenate([self._block(b, labels=False)[-1]
                                for b in range(CALIBRATION_BLOCKS)])
            self.offset = _offset_for_rate(z, p.base_rate)
            self.calibrated_rate = float(_sigmoid(z - self.offset).mean())

    def _logit(self, dense, bags, lengths, rng):
        p = self.planted
        z = np.zeros(len(dense), np.float64)
        for name, w in p.fields.items():
            z += w * _bag_mean(self.effects[name]["scalar"], bags[name], lengths[name])
        for j, (a, b, w) in enumerate(p.pairs):
            key = "vector" if p.shared_vectors else f"vector_{j}"
            va = _bag_mean(self.effects[a][key], bags[a], lengths[a])
            vb = _bag_mean(self.effects[b][key], bags[b], lengths[b])
            z += w * np.einsum("nd,nd->n", va, vb)
        for name, w in p.dense.items():
            x = dense[:, int(name.split("_")[1])].astype(np.float64)
            z += w * ((x - 0.5) * np.sqrt(12.0) if self.dense_dist == "uniform" else x)
        for name, low, high, w in p.bands:
            x = dense[:, int(name.split("_")[1])].astype(np.float64)
            z += w * ((x >= low) & (x < high))
        return z + rng.normal(0.0, p.noise, len(z)) if p.noise else z

    @property
    def truth(self):
        """The planted truth as a JSON-serialisable dict (None without a planted label)."""
        if self.planted is None:
            return None
        out = {**self.planted.to_dict(), "data_seed": self.seed,
               "sizes": {f.name: f.size for f in self.fields if f.name in self.effects},
               "offset": self.offset,
               "logit": "sum_f w_f * mean(scalar_f[bag_f]) + sum_(a,b,w) w * "
                        "<mean(vector_a[bag_a]), mean(vector_b[bag_b])> + sum_i w_i * "
                        "standardized dense_i + sum_(i,low,high,w) w * [low <= dense_i < high]"
                        " + N(0, noise^2)",
               "label": ("Bernoulli(sigmoid(logit - offset))" if self.planted.kind == "binary"
                         else "logit"),
               "values": "scalar_f = default_rng([seed, crc32(f), 0]).standard_normal(m); "
                         + ("vector_f = default_rng([seed, crc32(f), 1])"
                            if self.planted.shared_vectors else
                            "vector_f (in the j-th pair, j from 0) = default_rng([seed, "
                            "crc32(f), 1, j])")
                         + ".standard_normal((m, dim)) * dim ** -0.25"}
        if self.planted.kind == "binary":
            out["calibrated_rate"] = self.calibrated_rate
        return out

    # -- rows

    def _rng(self, block, stream):
        return np.random.default_rng([self.seed, block, stream])

    def _block(self, b, labels=True):
        """Block b: (dense, bags, lengths, label), or the logit instead of the label."""
        n, rng = BLOCK_ROWS, self._rng(b, 0)
        if self.dense_dist == "uniform":
            dense = rng.random((n, self.num_dense), dtype=np.float32)
        else:
            dense = rng.standard_normal((n, self.num_dense), dtype=np.float32)
        bags, lengths = {}, {}
        for j, (field, sampler) in enumerate(zip(self.fields, self.samplers)):
            bags[field.name], lengths[field.name] = sample_bags(
                self._rng(b, 2 + j), n, field, sampler, self.max_rounds)
        rng = self._rng(b, 1)
        if self.planted is None:
            label = rng.integers(0, 2, n).astype(np.float32)
        else:
            z = self._logit(dense, bags, lengths, rng)
            if not labels:
                return dense, bags, lengths, z
            if self.planted.kind == "binary":
                label = (rng.random(n) < _sigmoid(z - self.offset)).astype(np.float32)
            else:
                label = z.astype(np.float32)
        return dense, bags, lengths, label

    def rows(self, start, stop):
        """Rows [start, stop) as a chunk dict (see the module docstring)."""
        if not 0 <= start <= stop:
            raise ValueError(f"bad row range [{start}, {stop})")
        first, last = start // BLOCK_ROWS, -(-stop // BLOCK_ROWS)
        blocks = [self._block(b) for b in range(first, last)]
        lo = start - first * BLOCK_ROWS
        hi = lo + stop - start

        def cat(parts):
            return np.concatenate(parts)[lo:hi] if parts else None

        names = [f.name for f in self.fields]
        if not blocks:
            return {"dense": np.zeros((0, self.num_dense), np.float32),
                    "bags": {f.name: np.zeros((0, f.width), np.int64) for f in self.fields},
                    "lengths": {n: np.zeros(0, np.int32) for n in names},
                    "label": np.zeros(0, np.float32)}
        return {"dense": cat([b[0] for b in blocks]),
                "bags": {n: cat([b[1][n] for b in blocks]) for n in names},
                "lengths": {n: cat([b[2][n] for b in blocks]) for n in names},
                "label": cat([b[3] for b in blocks])}

    def chunks(self, num_rows, chunk_rows=DEFAULT_CHUNK_ROWS, start=0):
        """Yields rows [start, start + num_rows) as chunk dicts of at most `chunk_rows`."""
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        for lo in range(start, start + num_rows, chunk_rows):
            yield self.rows(lo, min(lo + chunk_rows, start + num_rows))


# ------------------------------------------------------------------------------- fitting


def vocabulary_indices(values, vocabulary, separator=None):
    """The vocabulary positions of observed values (multi-hot: of each item), flattened;
    values outside the vocabulary (and empty ones) are dropped.

    Args:
        values: array of str/bytes or ints, one per example.
        vocabulary: list. The feature's vocabulary (a build's metadata).
        separator: str or None. Multi-hot item separator.
    """
    import pandas as pd

    values = [v.decode() if isinstance(v, bytes) else v for v in np.asarray(values).tolist()]
    if separator is not None:
        values = [item for v in values if v for item in v.split(separator)]
    index = pd.Index(vocabulary).get_indexer(pd.Index(values)) if values else np.zeros(0)
    index = np.asarray(index, np.int64)
    return index[index >= 0]


def fit_build(build_dir, k=1, k_max=None, log=print):
    """Fields fitted to the training split of a TFRecord build: one per categorical or
    multi-hot feature with a vocabulary, its index frequencies those of the vocabulary
    positions of its training values.

    Args:
        build_dir: str. A build folder (`tfrecords.build_tfrecords`).
        k, k_max: bag lengths of the fields (see `Field`).
        log: callable taking a str.

    Returns:
        list of `Field` named `cat_0, ...` (their `doc` names the source feature).
    """
    from deepmix_tf.data import tfrecords

    meta = tfrecords.read_metadata(build_dir)
    examples = tfrecords.read_examples(build_dir, "train")
    fields = []
    for feature in meta["features"]:
        if feature["type"] not in ("categorical", "multi_hot"):
            continue
        if not feature.get("vocabulary"):
            log(f"{feature['name']}: no vocabulary (hashed); not fitted")
            continue
        vocab = feature["vocabulary"]
        separator = feature.get("separator") if feature["type"] == "multi_hot" else None
        index = vocabulary_indices(examples[feature["name"]], vocab, separator)
        if not len(index):
            log(f"{feature['name']}: no training value in its vocabulary; not fitted")
            continue
        p = fit_frequencies(index, len(vocab))
        width = k_max or k
        if np.count_nonzero(p) < width:
            log(f"{feature['name']}: fewer than {width} values seen; not fitted")
            continue
        fields.append(Field(f"cat_{len(fields)}", len(vocab), k=k, k_max=k_max,
                            probabilities=p, doc=f"fitted to {feature['name']} of {build_dir}"))
        log(f"cat_{len(fields) - 1}: fitted to {feature['name']} ({len(vocab):,} values, "
            f"{len(index):,} observations)")
    if not fields:
        raise ValueError(f"{build_dir}: no categorical or multi-hot feature to fit")
    return fields


# ------------------------------------------------------------------------------- writing


def dataset_spec(generator, name="generated", files=None):
    """The dataset spec of Parquet splits written by `write_dataset` (a dict)."""
    binary = generator.label_kind == "binary"
    label = {"name": "label", "dtype": "int64", "values": [0, 1]} if binary else \
        {"name": "label", "dtype": "float32"}
    columns = [label] + [{"name": n, "dtype": "float32"} for n in generator.dense_names] + \
        [{"name": f.name, "dtype": "int64_list"} for f in generator.fields]
    features = [{"name": n, "type": "numeric"} for n in generator.dense_names]
    for f in generator.fields:
        feature = {"name": f.name, "type": "multi_hot", "vocabulary": {"identity": f.size},
                   "pooling": "sum"}
        if f.doc:
            feature["doc"] = f.doc
        features.append(feature)
    files = files or {s: f"{s}.parquet" for s in ("train", "validation", "test")}
    return {
        "name": name,
        "description": f"generated: {len(generator.fields)} categorical fields "
                       f"({'planted' if generator.planted else 'random'} label), "
                       f"{generator.num_dense} dense, seed {generator.seed}",
        "root": ".",
        "tables": {"rows": {"files": files, "format": {"type": "parquet"}, "columns": columns}},
        "examples": {"table": "rows"},
        "split": {"type": "files"},
        "task": ({"name": "click", "type": "binary", "label": "label"} if binary else
                 {"name": "value", "type": "regression", "label": "label"}),
        "features": features,
    }


def parquet_table(chunk, generator):
    """A chunk as a pyarrow Table: `label`, `dense_i` float32, `cat_j` list<int64>."""
    import pyarrow as pa

    binary = generator.label_kind == "binary"
    arrays = [pa.array(chunk["label"].astype(np.int64 if binary else np.float32))]
    names = ["label"]
    for i, n in enumerate(generator.dense_names):
        arrays.append(pa.array(np.ascontiguousarray(chunk["dense"][:, i])))
        names.append(n)
    for f in generator.fields:
        bags, lengths = chunk["bags"][f.name], chunk["lengths"][f.name]
        offsets = np.zeros(len(lengths) + 1, np.int32)
        np.cumsum(lengths, out=offsets[1:])
        values = bags[bags >= 0]  # row-major: the padding is on the right
        arrays.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)))
        names.append(f.name)
    return pa.Table.from_arrays(arrays, names=names)


def _mix32(x):
    """A bijection of uint32 (xor-shifts and odd multipliers, wrapping)."""
    with np.errstate(over="ignore"):
        x = np.asarray(x, np.uint32)
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(0x9E3779B1)
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(0x85EBCA77)
        return x ^ (x >> np.uint32(16))


def criteo_hex(indices, field_number):
    """8 lowercase hex digits per index: a fixed bijection of (field, index), so distinct
    indices of a field get distinct strings. Returns uint8 (n, 8)."""
    salt = _mix32(field_number + 1)
    with np.errstate(over="ignore"):
        h = _mix32(np.asarray(indices).astype(np.uint32) + salt)
    pairs = _HEX_PAIRS[h.astype(">u4").view(np.uint8)]  # two digits per byte, high first
    return pairs.view(np.uint8).reshape(len(h), 8)


def _missing(row_hash, column, rate):
    """A deterministic missing mask from (row, column): `row_hash` is `_mix32(row index)`."""
    return _mix32(row_hash ^ _mix32(column + 1000)) < np.uint32(min(rate, 1.0) * 0xFFFFFFFF)


def criteo_table(chunk, start, generator, missing=(0.1, 0.02)):
    """A chunk as a Criteo-Kaggle-shaped pyarrow Table (label, I1..I13, C1..C26).

    Integer column i is a geometric count of mean `CRITEO_MEANS[i]` from dense_i (uniform);
    C_j the hex string of cat_j's index (`criteo_hex`). Fields are empty (missing) at rates
    `missing` = (integer rate, categorical rate), deterministically per (row, column).
    """
    import pyarrow as pa

    n = len(chunk["label"])
    row_hash = _mix32(np.arange(start, start + n, dtype=np.int64).astype(np.uint32))
    arrays = [pa.array(chunk["label"].astype(np.int64))]
    p = 1.0 / (1.0 + CRITEO_MEANS)
    counts = np.floor(np.log1p(-chunk["dense"].astype(np.float64)) / np.log1p(-p)).astype(
        np.int64)
    def with_nulls(kind, column, rate, buffers):
        present = ~_missing(row_hash, column, rate)
        bitmap = pa.py_buffer(np.packbits(present, bitorder="little"))
        return pa.Array.from_buffers(kind, n, [bitmap, *buffers],
                                     null_count=int(n - np.count_nonzero(present)))

    for i in range(CRITEO_DENSE):
        arrays.append(with_nulls(pa.int64(), i, missing[0],
                                 [pa.py_buffer(np.ascontiguousarray(counts[:, i]))]))
    offsets = pa.py_buffer(np.arange(0, 8 * n + 1, 8, dtype=np.int32))
    for j, f in enumerate(generator.fields):
        chars = pa.py_buffer(criteo_hex(chunk["bags"][f.name][:, 0], j))
        arrays.append(with_nulls(pa.string(), CRITEO_DENSE + j, missing[1], [offsets, chars]))
    names = ["label"] + [f"I{i + 1}" for i in range(CRITEO_DENSE)] + \
        [f"C{j + 1}" for j in range(CRITEO_CATEGORICAL)]
    return pa.Table.from_arrays(arrays, names=names)


class _Timed:
    """Iterates chunks, adding up the seconds spent generating them."""

    def __init__(self, iterator):
        self.iterator, self.seconds = iterator, 0.0

    def __iter__(self):
        while True:
            start = time.perf_counter()
            try:
                chunk = next(self.iterator)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - start
            yield chunk


def split_sizes(num_rows, fractions=(0.8, 0.1, 0.1)):
    """Rows of train, validation and test: in order, each at least 1."""
    f = np.asarray(fractions, np.float64)
    if f.shape != (3,) or (f <= 0).any():
        raise ValueError(f"fractions: expected 3 positive numbers, got {fractions!r}")
    train = int(round(num_rows * f[0] / f.sum()))
    validation = int(round(num_rows * f[1] / f.sum()))
    sizes = [train, validation, num_rows - train - validation]
    if min(sizes) < 1:
        raise ValueError(f"{num_rows} rows split {fractions} leaves a split empty: {sizes}")
    return sizes


def _temp(path):
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{os.getpid()}")


def write_dataset(out_dir, generator, num_rows, file_format="parquet",
                  fractions=(0.8, 0.1, 0.1), chunk_rows=DEFAULT_CHUNK_ROWS, name="generated",
                  criteo_missing=(0.1, 0.02), log=print):
    """Writes `num_rows` generated rows as files, one chunk at a time.

    parquet: `train.parquet`, `validation.parquet`, `test.parquet` (rows split in order by
    `fractions`, one row group per chunk) and `spec.json`, their dataset spec.
    criteo: one `train.txt` in Criteo Kaggle's format (`criteo_table`) under
    `<out_dir>/criteo/` (or `out_dir` itself when named `criteo`), for the shipped `criteo`
    spec with `--data_dir` its parent; it needs 13 uniform dense columns and 26 fields of
    single indices.
    Either way `truth.json` (`Generator.truth`) is written beside them when the label is
    planted. Files are written under temporary names and renamed when all are complete.

    Args:
        out_dir: str. Where the files go.
        generator: `Generator`.
        num_rows: int. Rows in all.
        file_format: "parquet" or "criteo".
        fractions: (train, validation, test) proportions (parquet).
        chunk_rows: int. Rows generated and written at a time.
        name: str. The spec's name (parquet), which names its TFRecord build.
        criteo_missing: (integer rate, categorical rate) of empty fields (criteo).
        log: callable taking a str.

    Returns:
        dict: `files` (paths), `spec` (path or None), `truth` (path or None), `data_dir`
        (criteo: the `--data_dir` of its build), `rows`, `seconds`, `generate_seconds`,
        `rows_per_second` (of generation alone), `written_rows_per_second`.
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from deepmix_tf.files import write_json

    if file_format not in ("parquet", "criteo"):
        raise ValueError(f"file_format must be 'parquet' or 'criteo', got {file_format!r}")
    started = time.perf_counter()
    result = {"spec": None, "truth": None, "data_dir": None, "rows": int(num_rows)}
    if file_format == "criteo":
        if (generator.num_dense != CRITEO_DENSE or len(generator.fields) != CRITEO_CATEGORICAL
                or generator.dense_dist != "uniform" or generator.label_kind != "binary"
                or any(f.width != 1 for f in generator.fields)):
            raise ValueError("the criteo format needs 13 uniform dense columns, 26 fields "
                             "with one index per row (k=1) and a binary label")
        if os.path.basename(os.path.normpath(out_dir)) != "criteo":
            out_dir = os.path.join(out_dir, "criteo")
        result["data_dir"] = os.path.dirname(os.path.abspath(out_dir))
        plan = [("train.txt", 0, int(num_rows))]
    else:
        sizes = split_sizes(num_rows, fractions)
        starts = np.cumsum([0] + sizes[:-1])
        plan = [(f"{s}.parquet", int(a), n) for s, a, n in
                zip(("train", "validation", "test"), starts, sizes)]
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, f) for f, _, _ in plan]
    temps = [_temp(p) for p in paths]
    generate_seconds = 0.0
    try:
        for (_, start, n), temp in zip(plan, temps):
            timed = _Timed(generator.chunks(n, chunk_rows, start=start))
            writer, row = None, start
            try:
                for chunk in timed:
                    if file_format == "criteo":
                        table = criteo_table(chunk, row, generator, criteo_missing)
                        if writer is None:
                            writer = pacsv.CSVWriter(temp, table.schema, write_options=(
                                pacsv.WriteOptions(include_header=False, delimiter="\t",
                                                   quoting_style="none")))
                    else:
                        table = parquet_table(chunk, generator)
                        if writer is None:
                            # random indices do not compress by dictionary: 3x faster without
                            writer = pq.ParquetWriter(temp, table.schema, use_dictionary=False)
                    writer.write_table(table)
                    row += len(chunk["label"])
            finally:
                if writer is not None:
                    writer.close()
            generate_seconds += timed.seconds
        for temp, path in zip(temps, paths):
            os.replace(temp, path)
    except BaseException:
        for temp in temps:
            if os.path.exists(temp):
                os.remove(temp)
        raise
    result["files"] = paths
    if file_format == "parquet":
        result["spec"] = os.path.join(out_dir, "spec.json")
        write_json(result["spec"], dataset_spec(generator, name, {
            s: f for s, (f, _, _) in zip(("train", "validation", "test"), plan)}))
    if generator.truth is not None:
        result["truth"] = os.path.join(out_dir, "truth.json")
        write_json(result["truth"], generator.truth)
    seconds = time.perf_counter() - started
    result.update(seconds=seconds, generate_seconds=generate_seconds,
                  rows_per_second=num_rows / max(generate_seconds, 1e-9),
                  written_rows_per_second=num_rows / max(seconds, 1e-9))
    log(f"wrote {num_rows:,} rows to {out_dir} in {seconds:.1f} s "
        f"({result['written_rows_per_second']:,.0f} rows/s written; generation alone "
        f"{result['rows_per_second']:,.0f} rows/s)")
    return result
