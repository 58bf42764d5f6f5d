"""Top-k items per user from a trained model, inside the graph: the `recommend` signatures.

A `Recommender` holds the item catalogue of the build (the spec's `recommend.items` table) as
variables, already preprocessed: the item features' lookups run once, when it is made. Per
request, the user's raw features (every input of the model that is not an item column: user
columns and any context) are preprocessed once per user; the network then scores every
(user, item) pair, items already seen are masked, and `tf.math.top_k` returns the best `k`.

    recommender = Recommender(model, meta, tfrecords.load_catalogue(dataset_dir, meta))
    ids, scores = recommender.recommend({"user_id": [42], "gender": ["M"], ...}, k=10,
                                        exclude=[[1193, 661]])

Exports carry it as two signatures (`saved_model.export`): `recommend` (user features, `k`)
and `recommend_excluding` (also `exclude`: item ids per user, padded with any id outside the
catalogue, e.g. -1). Rows with fewer than `k` items left after exclusion end with padding
items: id -1 (or "" for string ids) and score -inf.
"""

import numpy as np
import tensorflow as tf

from deepmix_tf.data import blocks
from deepmix_tf.models.preprocessing import row_input
from deepmix_tf.tasks import make_task

SIGNATURES = ("recommend", "recommend_excluding")
K, EXCLUDE = "k", "exclude"


def item_inputs(meta):
    """The raw inputs that belong to items: the catalogue table's columns."""
    if not meta.get("items"):
        raise ValueError(f"the build of {meta['dataset']!r} has no item catalogue; its spec "
                         "needs a \"recommend\" section (BUILD.md, \"Dataset specs\")")
    return set(meta["items"]["columns"])


def _item_outputs(meta, items):
    """The preprocessed outputs that depend on items only: item features, and the rows of
    dense tables keyed by an item column."""
    return items | {row_input(name) for name, t in meta["dense_tables"].items()
                    if t["key"] in items}


def _column(values, dtype, shape):
    """A catalogue column as the model input's numpy array."""
    if dtype == tf.string:
        return np.asarray(["" if v is None else str(v) for v in values], dtype=object)
    if len(shape) > 1:  # a bag of ids
        return blocks.pad_bags(values, shape[1])
    return np.asarray(values).astype(dtype.as_numpy_dtype)


def _placeholder(spec, n):
    """Values for inputs whose outputs are not used: "", 0, or bags of padding."""
    shape = tf.concat([[n], tf.constant(spec.shape[1:], tf.int32)], 0) if spec.shape.rank > 1 \
        else [n]
    if spec.dtype == tf.string:
        return tf.fill(shape, "")
    return tf.fill(shape, tf.constant(-1 if spec.shape.rank > 1 else 0, spec.dtype))


class Recommender(tf.Module):
    """Scores a catalogue of items for users with a model of `models.build_model`.

    Args:
        model: the trained full Keras model (raw features in).
        meta: the metadata of its build (`tfrecords.read_metadata`), with an item catalogue.
        catalogue: the build's item table (`tfrecords.load_catalogue`).
    """

    def __init__(self, model, meta, catalogue):
        super().__init__(name="recommender")
        from deepmix_tf.export.saved_model import input_specs, split_model

        self.task = make_task(meta["task"])
        self.task.ranking_score(tf.zeros([0]))  # a task without a ranking score fails here
        self.preprocessor, self.network = split_model(model, "recommendations")
        specs = {s.name: s for s in input_specs(model)}
        items = item_inputs(meta)
        key = meta["items"]["key"]
        if key not in catalogue:
            raise ValueError(f"the catalogue has no column {key!r} (its key)")
        self.user_specs = [s for name, s in specs.items() if name not in items]
        self.item_specs = [s for name, s in specs.items() if name in items]
        clash = {K, EXCLUDE} & {s.name for s in self.user_specs}
        if clash:
            raise ValueError(f"user inputs named {sorted(clash)} clash with the recommend "
                             "signature's own inputs")
        self.size = len(catalogue)
        self.key_dtype = tf.string if catalogue[key].dtype == object else tf.int64
        ids = _column(catalogue[key].to_numpy(), self.key_dtype, [None])
        self.item_ids = tf.constant(ids)
        self.padding_id = tf.constant("" if self.key_dtype == tf.string else -1, self.key_dtype)
        positions = tf.range(self.size, dtype=tf.int64)
        self.index = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(self.item_ids, positions), default_value=-1)
        # Item features, preprocessed once; the user inputs' values here are not used.
        raw = {s.name: tf.constant(_column(catalogue[s.name].to_numpy(), s.dtype, s.shape))
               for s in self.item_specs}
        raw.update({s.name: _placeholder(s, self.size) for s in self.user_specs})
        outputs = self.preprocessor(raw, training=False)
        kept = _item_outputs(meta, items)
        self.items = {name: tf.Variable(t, trainable=False, name=f"items_{name}")
                      for name, t in outputs.items() if name in kept}
        self.user_outputs = [name for name in outputs if name not in kept]

    # -- the graph
    def user_signature(self):
        """Input specs of the user features (model input order) and `k`."""
        return self.user_specs + [tf.TensorSpec([], tf.int32, name=K)]

    def exclude_spec(self):
        return tf.TensorSpec([None, None], self.key_dtype, name=EXCLUDE)

    def scores(self, users):
        """(users, items) scores of every catalogue item for a dict of raw user features."""
        n = tf.shape(users[self.user_specs[0].name])[0] if self.user_specs else 1
        raw = dict(users)
        raw.update({s.name: _placeholder(s, n) for s in self.item_specs})
        user = {name: t for name, t in self.preprocessor(raw, training=False).items()
                if name in self.user_outputs}

        def one_user(row):
            pairs = {name: tf.repeat(t[None], self.size, axis=0) for name, t in row.items()}
            pairs.update({name: v.read_value() for name, v in self.items.items()})
            return tf.cast(self.task.ranking_score(self.network(pairs, training=False)),
                           tf.float32)

        if not user:  # no user input reaches the network: one ranking for everybody
            return tf.repeat(one_user({})[None], n, axis=0)
        # A network call per user (up to 10 at once, map_fn's default): memory stays a few
        # catalogues' worth at any batch size.
        return tf.map_fn(one_user, user,
                         fn_output_signature=tf.TensorSpec([self.size], tf.float32))

    def top_k(self, users, k, exclude=None):
        """{"item_ids": (users, k), "scores": (users, k)}, best first; `exclude`: item ids
        per user (ids outside the catalogue are ignored)."""
        k = tf.convert_to_tensor(k, tf.int32)
        checks = [tf.debugging.assert_positive(k, message="k must be at least 1"),
                  tf.debugging.assert_less_equal(
                      k, self.size, message=f"k must be at most {self.size}, the number of "
                                            "items in the catalogue")]
        with tf.control_dependencies(checks):
            scores = self.scores(users)
        if exclude is not None:
            index = self.index.lookup(tf.convert_to_tensor(exclude, self.key_dtype))
            at = tf.where(index >= 0)
            at = tf.stack([at[:, 0], tf.gather_nd(index, at)], axis=1)
            seen = tf.scatter_nd(at, tf.ones(tf.shape(at)[:1], tf.float32), tf.shape(scores,
                                                                                     tf.int64))
            scores = tf.where(seen > 0, tf.constant(-np.inf, tf.float32), scores)
        best, where = tf.math.top_k(scores, k)
        ids = tf.where(tf.math.is_inf(best) & (best < 0), self.padding_id,
                       tf.gather(self.item_ids, where))
        return {"item_ids": ids, "scores": best}

    # -- Python
    def recommend(self, features, k, exclude=None):
        """NumPy in, NumPy out: (item ids (users, k), scores (users, k)) for raw user features
        (name -> array of one value per user, as in the build; other names are ignored)."""
        users = {s.name: tf.constant(np.asarray(features[s.name]), s.dtype)
                 for s in self.user_specs}
        out = self._top_k_function(users, tf.constant(k, tf.int32),
                                   None if exclude is None else tf.constant(
                                       np.asarray(exclude), self.key_dtype))
        ids = out["item_ids"].numpy()
        return (ids.astype(str) if ids.dtype == object else ids), out["scores"].numpy()

    @tf.function(reduce_retracing=True)
    def _top_k_function(self, users, k, exclude):
        return self.top_k(users, k, exclude)

    def endpoints(self):
        """{signature name: (function of the flat signature inputs, input signature)}."""
        names = [s.name for s in self.user_specs]

        def plain(*args):
            return self.top_k(dict(zip(names, args[:-1])), args[-1])

        def excluding(*args):
            return self.top_k(dict(zip(names, args[:-2])), args[-2], args[-1])

        return {"recommend": (plain, self.user_signature()),
                "recommend_excluding": (excluding, self.user_signature() + [self.exclude_spec()])}

    def signature_rows(self, meta):
        """Rows (name, dtype, shape, meaning) of the recommend inputs and outputs."""
        docs = {f["name"]: f["doc"] for f in meta["features"]}
        key = meta["items"]["key"]
        inputs = [(s.name, s.dtype.name, "(users,)" if s.shape.rank == 1 else
                   f"(users, {s.shape[1]})", docs.get(s.name, "")) for s in self.user_specs]
        inputs.append((K, "int32", "()", f"items per user, 1 to {self.size}"))
        inputs.append((EXCLUDE, self.key_dtype.name, "(users, n)",
                       f"recommend_excluding only: {key}s not to recommend (already seen); "
                       "pad with an id outside the catalogue"))
        score = (f"predicted {meta['task']['label']}" if self.task.type == "regression"
                 else "probability")
        outputs = [("item_ids", self.key_dtype.name, "(users, k)",
                    f"the top-k {key}s, best first"),
                   ("scores", "float32", "(users, k)", f"their scores ({score})")]
        return inputs, outputs


# ------------------------------------------------------------------------------- runs


def load_run(model_dir):
    """(Recommender, build folder, metadata) of a trained run (`experiments.train`)."""
    import json
    import os

    from deepmix_tf.data import tfrecords
    from deepmix_tf.models import load_model

    with open(os.path.join(model_dir, "metrics.json")) as f:
        dataset_dir = json.load(f)["build"]["dir"]
    meta = tfrecords.read_metadata(dataset_dir)
    catalogue = tfrecords.load_catalogue(dataset_dir, meta)
    model = load_model(os.path.join(model_dir, "model.keras"))
    return Recommender(model, meta, catalogue), dataset_dir, meta


def interactions(dataset_dir, meta, split):
    """(user ids, item ids, labels) of a split's examples, in file order."""
    from deepmix_tf.data import tfrecords

    rows = tfrecords.read_examples(dataset_dir, split)
    return (rows[meta["items"]["user"]], rows[meta["items"]["key"]],
            rows[meta["label"]["name"]])


def user_features(dataset_dir, meta, user, overrides=None):
    """One user's raw features, as arrays of one value: from the user's first example in
    the build (train, validation, test), then `overrides` (name -> value). A user with no
    example keeps its id and gets "" or 0 for the rest unless overridden: their lookups
    give the out-of-vocabulary rows, as for any unknown value.

    Returns:
        ({name: (1,) array}, whether the user has examples in the build).
    """
    from deepmix_tf.data import tfrecords

    user_column = meta["items"]["user"]
    for split in ("train", "validation", "test"):
        rows = tfrecords.read_examples(dataset_dir, split)
        ids = rows[user_column]
        user_value = np.asarray([user], ids.dtype)[0] if ids.dtype != object else (
            str(user).encode())
        hit = np.flatnonzero(ids == user_value)
        if len(hit):
            features = {name: v[hit[:1]] for name, v in rows.items()}
            break
    else:
        features = {name: (np.asarray([b""], object) if v.dtype == object
                           else np.zeros((1,) + v.shape[1:], v.dtype))
                    for name, v in rows.items()}
        features[user_column] = np.asarray([user_value], ids.dtype)
    for name, value in (overrides or {}).items():
        if name not in features:
            raise ValueError(f"unknown feature {name!r}; the examples have {sorted(features)}")
        features[name] = np.asarray([value], features[name].dtype) if features[
            name].dtype != object else np.asarray([str(value).encode()], object)
    return features, bool(len(hit))


def seen_items(user_ids, item_ids, users):
    """Padded (len(users), n) array of the items each of `users` has in (user_ids,
    item_ids), padded with -1 (int ids) or b"" (string ids)."""
    order = np.argsort(user_ids, kind="stable")
    sorted_users = user_ids[order]
    start = np.searchsorted(sorted_users, users, side="left")
    end = np.searchsorted(sorted_users, users, side="right")
    width = max(1, int((end - start).max(initial=0)))
    pad = b"" if item_ids.dtype == object else -1
    out = np.full((len(users), width), pad, dtype=item_ids.dtype)
    for row, (a, b) in enumerate(zip(start, end)):
        out[row, :b - a] = item_ids[order[a:b]]
    return out


def network_matmuls(network):
    """The matrix products of one row through `network`: a list of ("MatMul", a shape,
    b shape, transpose_a, transpose_b) and ("Einsum", equation, shapes...) with batch 1,
    read from its traced graph (products inside nested functions are not seen)."""
    specs = {name: tf.TensorSpec([1] + list(t.shape[1:]), t.dtype)
             for name, t in network.input.items()}
    graph = tf.function(lambda x: network(x, training=False)).get_concrete_function(
        specs).graph
    out = []
    for op in graph.get_operations():
        shapes = [tuple(t.shape.as_list()) for t in op.inputs]
        if op.type == "MatMul":
            out.append(("MatMul", *shapes, op.get_attr("transpose_a"),
                        op.get_attr("transpose_b")))
        elif op.type == "Einsum":
            out.append(("Einsum", op.get_attr("equation").decode(), *shapes))
        elif op.type.startswith("BatchMatMul"):
            raise ValueError(f"{op.type} is not counted yet ({op.name})")
    return out


def multiply_adds(matmuls, rows=1):
    """Multiply-adds of `network_matmuls`' products for `rows` rows (their batch
    dimension of 1 becoming `rows`)."""
    total = 0
    for product in matmuls:
        if product[0] == "MatMul":
            _, a, b, ta, tb = product
            m, k = a[::-1] if ta else a
            n = b[0] if tb else b[1]
            total += m * k * n
        else:
            _, equation, *shapes = product
            sizes = {}
            for labels, shape in zip(equation.split("->")[0].split(","), shapes):
                sizes.update(zip(labels, shape))
            total += int(np.prod(list(sizes.values())))
    return total * rows
