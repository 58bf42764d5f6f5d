"""The scale benchmark of issue 18 (`python -m experiments.benchmark_scale`): the streaming
TFRecord build, streaming reads and training at Criteo-shaped sizes, DLRM's single-socket
configuration against the paper and this machine's floor, and step time against table size.

Every timed measurement runs in a child process of its own (`run_child`), one at a time, so
that measurements never overlap and each child's peak resident memory
(`getrusage(RUSAGE_SELF).ru_maxrss`) is its own. A child prints its result as one JSON line
after `RESULT_MARK` on stdout; its other output goes to a log file under the work folder.

    python -m benchmarks.scale TASK ARGS_JSON     # one child (TASK in CHILDREN)

The parent imports neither TensorFlow nor Keras: only the children do.
"""

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_MARK = "SCALE-RESULT "
MIB = 1 << 20
# The DLRM paper (Naumov et al., 2019, section 6): 1,000 batches of its single-socket
# configuration on one socket of a Xeon Gold 6138 (20 cores) with Caffe2, and on one V100.
PAPER_SECONDS = {"caffe2_xeon6138_one_socket_20_cores": 256.0, "v100": 62.0}
DLRM = {"num_tables": 8, "table_rows": 1_000_000, "dim": 64, "num_dense": 512,
        "bottom": [512, 64], "top": [1024, 1024, 1024], "batch": 2048, "k": 100}
STAMP = "stamp.json"


# ------------------------------------------------------------------------------- machine


def _meminfo():
    out = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                name, value = line.split(":", 1)
                out[name] = int(value.split()[0]) * 1024  # kB
    except OSError:
        pass
    return out


def mem_available_bytes():
    """MemAvailable of /proc/meminfo, in bytes (None where unreadable)."""
    return _meminfo().get("MemAvailable")


def machine():
    """The machine in a dict: cores, CPU model, memory, library versions."""
    import importlib.metadata
    import platform

    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = _meminfo()
    versions = {}
    for name in ("tensorflow", "keras", "keras-rs", "numpy", "pyarrow"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "cpu_model": model, "mem_total_gib": info.get("MemTotal", 0) / 2 ** 30,
            "mem_available_gib": info.get("MemAvailable", 0) / 2 ** 30,
            "python": platform.python_version(), "versions": versions}


# ------------------------------------------------------------------------------- children


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_child(task, args, log_path):
    """Runs `CHILDREN[task](args)` in a new Python process and returns its result dict.
    Its stdout and stderr (bar the result line) go to `log_path`."""
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    command = [sys.executable, "-m", "benchmarks.scale", task, json.dumps(args)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    lines = done.stdout.splitlines()
    results = [line for line in lines if line.startswith(RESULT_MARK)]
    with open(log_path, "w") as f:
        f.write("\n".join(line for line in lines if not line.startswith(RESULT_MARK)))
        f.write("\n--- stderr ---\n" + done.stderr)
    if done.returncode != 0 or not results:
        tail = "\n".join(done.stderr.strip().splitlines()[-25:])
        raise RuntimeError(f"child {task} failed (exit status {done.returncode}); log "
                           f"{log_path}; its stderr ends:\n{tail}")
    return json.loads(results[-1][len(RESULT_MARK):])


def _log(message):
    print(message, file=sys.stderr, flush=True)


def _child_build(args):
    """Times one streaming TFRecord build of the `criteo` spec."""
    from deepmix_tf.data import tfrecords

    base = _peak_rss_mib()
    start = time.perf_counter()
    path = tfrecords.build_tfrecords("criteo", args["data_dir"], args["output_dir"],
                                     force=True, log=_log, streaming=True)
    seconds = time.perf_counter() - start
    peak = _peak_rss_mib()
    meta = tfrecords.read_metadata(path)
    vocabulary = sum(len(f.get("vocabulary") or []) for f in meta["features"]
                     if f["type"] == "categorical")
    return {"build_dir": path, "seconds": seconds, "peak_rss_mib": peak,
            "base_rss_mib": base, "vocabulary_entries": vocabulary,
            "examples": {s: v["examples"] for s, v in meta["splits"].items()}}


def _child_read(args):
    """Streams batches of a build's train split for a while: rows/s."""
    from deepmix_tf.data import tfrecords

    base = _peak_rss_mib()
    meta = tfrecords.read_metadata(args["build_dir"])
    ds = tfrecords.make_dataset(args["build_dir"], "train", args["batch"], shuffle=True,
                                seed=args["seed"], repeat=True)
    batches = iter(ds)
    for _ in range(args["warmup"]):
        next(batches)
    rows = count = 0
    start = time.perf_counter()
    while True:
        _, label = next(batches)
        rows += int(label.shape[0])
        count += 1
        seconds = time.perf_counter() - start
        if seconds >= args["seconds"]:
            break
    train = meta["splits"]["train"]["examples"]
    return {"rows_read": rows, "batches": count, "seconds": seconds,
            "rows_per_s": rows / seconds,
            "passes_over_split": (rows + args["warmup"] * args["batch"]) / train,
            "peak_rss_mib": _peak_rss_mib(), "base_rss_mib": base}


def _step_clock(keras, warmup):
    """A callback noting the time at the end of the last warm-up step and of every step."""

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.start = self.end = None
            self.steps = 0

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            if batch == warmup - 1:
                self.start = now
            elif batch >= warmup:
                self.end, self.steps = now, self.steps + 1

    return Clock()


def _child_train(args):
    """Streaming training of a small DLRM (the trainer's model, optimizer and input
    pipeline) on a build's train split: steady-state steps/s after a warm-up."""
    import keras

    from deepmix_tf import tasks
    from deepmix_tf.data import tfrecords
    from deepmix_tf.models import build_model, load_tables
    from deepmix_tf.training.trainer import default_config, make_optimizer

    base = _peak_rss_mib()
    build = args["build_dir"]
    meta = tfrecords.read_metadata(build)
    config = default_config("criteo", "dlrm", epochs=1, optimizer="sgd", streaming="on",
                            batch_size=args["batch"], seed=args["seed"])
    keras.utils.set_random_seed(config.seed)
    preprocessor, network, _ = build_model(config, meta, load_tables(build, config, meta))
    task = tasks.make_task(meta["task"])
    network.compile(optimizer=make_optimizer(config), loss=task.loss(config),
                    jit_compile=False)

    def preprocess(features):
        return preprocessor({name: features[name] for name in preprocessor.input})

    train = meta["splits"]["train"]["examples"]
    steps = args["steps"] or max(1, -(-train // config.batch_size) - args["warmup"])
    ds = tfrecords.make_dataset(build, "train", config.batch_size, shuffle=True,
                                seed=config.seed, repeat=True, transform=preprocess)
    clock = _step_clock(keras, args["warmup"])
    network.fit(ds, epochs=1, steps_per_epoch=args["warmup"] + steps, callbacks=[clock],
                verbose=0)
    seconds = clock.end - clock.start
    return {"steps": clock.steps, "batch": config.batch_size, "seconds": seconds,
            "steps_per_s": clock.steps / seconds,
            "rows_per_s": clock.steps * config.batch_size / seconds,
            "one_epoch": not args["steps"], "parameters": int(network.count_params()),
            "model": {"embedding_dim": config.embedding_dim,
                      "bottom_units": config.bottom_units, "head_units": config.head_units,
                      "optimizer": config.optimizer, "learning_rate": config.learning_rate},
            "peak_rss_mib": _peak_rss_mib(), "base_rss_mib": base}


def dlrm_model(table_rows, num_tables=8, dim=64, num_dense=512, bottom=(512, 64),
               top=(1024, 1024, 1024), k=100):
    """DLRM (Naumov et al., 2019) as a Keras 3 functional model: a bottom MLP on `dense`
    (num_dense,), `num_tables` sum-pooled `BagEmbedding` lookups of `cat_j` int (k,) bags,
    the pairwise dot products of all the vectors beside the bottom output, a top MLP and a
    sigmoid output. The last bottom width must equal `dim`."""
    import keras
    import keras_rs

    from deepmix_tf.layers.embedding import BagEmbedding

    if bottom[-1] != dim:
        raise ValueError(f"the bottom MLP must end at the embedding width {dim}: {bottom}")
    dense = keras.Input((num_dense,), name="dense")
    x = dense
    for i, units in enumerate(bottom):
        x = keras.layers.Dense(units, activation="relu", name=f"bottom_{i}")(x)
    bags = [keras.Input((k,), dtype="int64", name=f"cat_{j}") for j in range(num_tables)]
    vectors = [BagEmbedding(table_rows, dim, name=f"table_{j}")(b) for j, b in enumerate(bags)]
    interactions = keras_rs.layers.DotInteraction(name="dot_interaction")([x] + vectors)
    y = keras.layers.Concatenate(name="top_input")([x, interactions])
    for i, units in enumerate(top):
        y = keras.layers.Dense(units, activation="relu", name=f"top_{i}")(y)
    y = keras.layers.Dense(1, activation="sigmoid", name="output")(y)
    return keras.Model({"dense": dense, **{f"cat_{j}": b for j, b in enumerate(bags)}}, y,
                       name="dlrm")


def dlrm_batches(table_rows, num_tables, num_dense, batch, k, pool, seed=0):
    """`pool` random DLRM batches (features dict name -> (pool, batch, ...), labels
    (pool, batch, 1)) from `deepmix_tf.data.generate`: uniform dense features in [0, 1),
    bags of k distinct uniform indices per table, Bernoulli(0.5) labels (DLRM's random
    data), to be cycled so that input generation is not timed."""
    from deepmix_tf.data import generate

    gen = generate.Generator(generate.make_fields([table_rows] * num_tables, k=k),
                             num_dense=num_dense, seed=seed)
    chunk = gen.rows(0, pool * batch)
    features = {"dense": chunk["dense"].reshape(pool, batch, num_dense)}
    for name, bags in chunk["bags"].items():
        features[name] = bags.reshape(pool, batch, k)
    return features, chunk["label"].reshape(pool, batch, 1)


def _measure_floor(table_rows, batch, k, dim, iterations):
    """This machine's rates: float32 matmul GFLOP/s (2048x1024 by 1024x1024, chained in a
    tf.function loop), streaming copy GB/s (y = y * c over a 256 MiB array, read + write
    counted) and random-gather GB/s (tf.gather of batch * k random rows of a table_rows x dim
    float32 variable; the gathered rows' bytes counted)."""
    import tensorflow as tf

    from benchmarks.timing import matmul_gflops

    out = {}
    m, n, p = 2048, 1024, 1024
    out["matmul_gflops"] = matmul_gflops(iterations["matmul"], m, n, p)
    out["matmul_shape"] = [[m, n], [n, p]]

    size = 64 * MIB  # float32 elements: 256 MiB
    y = tf.random.uniform((size,))
    c = tf.constant(1.0)

    @tf.function
    def copies(x, count):
        for _ in tf.range(count):
            x = x * c
        return x

    copies(y, tf.constant(2)).numpy()
    start = time.perf_counter()
    copies(y, tf.constant(iterations["copy"])).numpy()
    seconds = time.perf_counter() - start
    out["copy_gbps"] = iterations["copy"] * 2 * size * 4 / seconds / 1e9
    out["copy_mib"] = size * 4 / MIB
    del y

    table = tf.Variable(tf.random.uniform((table_rows, dim)))
    rng = np.random.default_rng(0)
    pool = [tf.constant(rng.integers(0, table_rows, batch * k)) for _ in range(8)]
    gather = tf.function(lambda i: tf.gather(table, i))
    for i in pool:
        gather(i).numpy()
    start = time.perf_counter()
    for step in range(iterations["gather"]):
        result = gather(pool[step % len(pool)])
    result.numpy()
    seconds = time.perf_counter() - start
    out["gather_gbps"] = iterations["gather"] * batch * k * dim * 4 / seconds / 1e9
    out["gather_table"] = [table_rows, dim]
    out["gather_rows_per_call"] = batch * k
    return out


def _child_dlrm(args):
    """Steady-state training steps of `dlrm_model` on a pool of random batches
    (`benchmarks.timing.time_fit`), after this machine's floor rates if asked."""
    import keras
    import tensorflow as tf

    from benchmarks import timing
    from deepmix_tf.layers.embedding import SparseSGD

    base = _peak_rss_mib()
    out = {}
    if args.get("floor_iterations"):
        out["floor"] = _measure_floor(args["table_rows"], args["batch"], args["k"],
                                      args["dim"], args["floor_iterations"])
    keras.utils.set_random_seed(args["seed"])
    features, labels = dlrm_batches(args["table_rows"], args["num_tables"], args["num_dense"],
                                    args["batch"], args["k"], args["pool"], args["seed"])
    model = dlrm_model(args["table_rows"], args["num_tables"], args["dim"], args["num_dense"],
                       args["bottom"], args["top"], args["k"])
    model.compile(optimizer=SparseSGD(0.1), loss="binary_crossentropy", jit_compile=False)
    seconds, loss, fit_seconds = timing.time_fit(model, features, labels, args["steps"],
                                                 args["warmup"], keras.callbacks.Callback)
    dense_macs = sum(int(np.prod(layer.kernel.shape)) for layer in model.layers
                     if isinstance(layer, keras.layers.Dense))
    out.update({"steps": args["steps"], "warmup": args["warmup"], "seconds": seconds,
                "seconds_per_batch": seconds / args["steps"], "loss": loss,
                "fit_seconds": fit_seconds, "dense_macs_per_row": dense_macs,
                "parameters": int(model.count_params()), "dtype": "float32",
                "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
                "peak_rss_mib": _peak_rss_mib(), "base_rss_mib": base})
    return out


CHILDREN = {"build": _child_build, "read": _child_read, "train": _child_train,
            "dlrm": _child_dlrm}


# ------------------------------------------------------------------------------- data


def _stamp_matches(path, want):
    try:
        with open(path) as f:
            return json.load(f) == want
    except (OSError, ValueError):
        return False


def data_stamp(rows, vocab, zipf, seed):
    """What a generated Criteo TSV is made of; a folder holding the same is reused."""
    return {"rows": int(rows), "vocab": int(vocab), "zipf": float(zipf), "seed": int(seed),
            "format": "criteo", "generator": "deepmix_tf.data.generate"}


def ensure_criteo_data(work_dir, rows, vocab, zipf, seed, log=print):
    """Criteo-shaped TSV rows at `<work_dir>/data-<rows>/criteo/train.txt` (26 fields of
    `vocab` values with Zipf(`zipf`) frequencies, the generator's defaults otherwise),
    generated unless its stamp says the same is there. Returns a dict: `data_dir` (the
    build's data root), `tsv_bytes`, `reused`, and when generated `generate_seconds`."""
    from deepmix_tf.data import generate
    from deepmix_tf.files import write_json

    data_dir = os.path.join(work_dir, f"data-{rows}")
    tsv = os.path.join(data_dir, "criteo", "train.txt")
    stamp, want = os.path.join(data_dir, STAMP), data_stamp(rows, vocab, zipf, seed)
    out = {"data_dir": data_dir, "reused": True}
    if not (os.path.isfile(tsv) and _stamp_matches(stamp, want)):
        if os.path.exists(stamp):
            os.remove(stamp)
        log(f"generating {rows:,} Criteo-shaped rows into {tsv} (26 fields of {vocab:,} "
            f"values, Zipf {zipf})")
        gen = generate.Generator(generate.make_fields([vocab] * generate.CRITEO_CATEGORICAL,
                                                      probabilities=zipf), seed=seed)
        result = generate.write_dataset(data_dir, gen, rows, file_format="criteo", log=log)
        write_json(stamp, want)
        out.update(reused=False, generate_seconds=result["seconds"])
    out["tsv_bytes"] = os.path.getsize(tsv)
    return out


def _bytes_under(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
               for f in files)


def _build_root(work_dir, rows):
    return os.path.join(work_dir, f"tfrecords-{rows}")


def build_one(work_dir, rows, vocab, zipf, seed, log=print):
    """Generates (or reuses) the data of one size and times its build in a child."""
    data = ensure_criteo_data(work_dir, rows, vocab, zipf, seed, log)
    root = _build_root(work_dir, rows)
    stamp = os.path.join(root, STAMP)
    if os.path.exists(stamp):
        os.remove(stamp)
    log(f"building the TFRecords of {rows:,} rows (child process)")
    result = run_child("build", {"data_dir": data["data_dir"], "output_dir": root},
                       os.path.join(work_dir, "logs", f"build-{rows}.log"))
    from deepmix_tf.files import write_json

    write_json(stamp, data_stamp(rows, vocab, zipf, seed))
    result.update(rows=int(rows), rows_per_s=rows / result["seconds"],
                  tfrecord_bytes=_bytes_under(result["build_dir"]),
                  tsv_bytes=data["tsv_bytes"], data_reused=data["reused"],
                  generate_seconds=data.get("generate_seconds"))
    return result


def ensure_build(work_dir, rows, vocab, zipf, seed, log=print):
    """The build folder of one size: the existing one when its stamp matches, else built
    (untimed here; the build section times builds)."""
    root = _build_root(work_dir, rows)
    path = os.path.join(root, "criteo")
    if (os.path.isfile(os.path.join(path, "metadata.json"))
            and _stamp_matches(os.path.join(root, STAMP), data_stamp(rows, vocab, zipf, seed))):
        return path
    return build_one(work_dir, rows, vocab, zipf, seed, log)["build_dir"]


# ------------------------------------------------------------------------------- sections


def build_section(sizes, work_dir, vocab, zipf=1.05, seed=0, log=print):
    """One timed streaming build per size. Returns a list of result dicts (`rss_ratio`: peak
    RSS over the smallest size's)."""
    results = [build_one(work_dir, rows, vocab, zipf, seed, log) for rows in sorted(sizes)]
    for r in results:
        r["rss_ratio"] = r["peak_rss_mib"] / results[0]["peak_rss_mib"]
    return results


def read_section(sizes, work_dir, vocab, zipf=1.05, seed=0, batch=2048, seconds=30.0,
                 warmup=5, log=print):
    """Streaming read throughput of each size's train split, a child each."""
    results = []
    for rows in sorted(sizes):
        build = ensure_build(work_dir, rows, vocab, zipf, seed, log)
        log(f"reading the train split of {rows:,} rows for {seconds:g} s (child process)")
        r = run_child("read", {"build_dir": build, "batch": batch, "seconds": seconds,
                               "warmup": warmup, "seed": seed},
                      os.path.join(work_dir, "logs", f"read-{rows}.log"))
        results.append({"rows": int(rows), "batch": batch, **r})
    return results


def train_section(sizes, work_dir, vocab, zipf=1.05, seed=0, batch=2048, steps=300,
                  warmup=5, log=print):
    """Streaming training of the trainer's DLRM (criteo defaults, sparse SGD) on each
    size's train split, a child each; `steps` 0 is one epoch."""
    results = []
    for rows in sorted(sizes):
        build = ensure_build(work_dir, rows, vocab, zipf, seed, log)
        log(f"training on the train split of {rows:,} rows (child process)")
        r = run_child("train", {"build_dir": build, "batch": batch, "steps": steps,
                                "warmup": warmup, "seed": seed},
                      os.path.join(work_dir, "logs", f"train-{rows}.log"))
        results.append({"rows": int(rows), **r})
    return results


def dlrm_floor(floor, dense_macs_per_row, batch, num_tables, k, dim):
    """The floor of one DLRM step from the measured rates: MLP FLOPs at the matmul rate plus
    embedding bytes at the random-gather bandwidth."""
    flops = 3 * 2 * batch * dense_macs_per_row  # forward, and backward ~ 2x forward
    embedding_bytes = num_tables * batch * k * dim * 4 * 2  # gather forward + scatter update
    mlp_s = flops / (floor["matmul_gflops"] * 1e9)
    embedding_s = embedding_bytes / (floor["gather_gbps"] * 1e9)
    return {"mlp_flops_per_batch": flops, "embedding_bytes_per_batch": embedding_bytes,
            "mlp_s_per_batch": mlp_s, "embedding_s_per_batch": embedding_s,
            "floor_s_per_batch": mlp_s + embedding_s}


def dlrm_section(work_dir, batches=1000, timed=100, warmup=5, table_rows=1_000_000,
                 floor_iterations=None, pool=8, seed=0, log=print):
    """DLRM's single-socket configuration (`DLRM`): `timed` steady-state batches (all of
    `batches` when `timed` is None), extrapolated to `batches`, beside the paper's figures
    and the floor of this machine (measured first, in the same child)."""
    cfg = {**DLRM, "table_rows": int(table_rows)}
    steps = batches if timed is None else timed
    floor_iterations = floor_iterations or {"matmul": 50, "copy": 20, "gather": 50}
    log(f"DLRM: {cfg['num_tables']} tables of {cfg['table_rows']:,} x {cfg['dim']}, "
        f"{steps} timed batches of {cfg['batch']} (child process)")
    r = run_child("dlrm", {**cfg, "steps": steps, "warmup": warmup, "pool": pool,
                           "seed": seed, "floor_iterations": floor_iterations},
                  os.path.join(work_dir, "logs", "dlrm.log"))
    floor = dlrm_floor(r["floor"], r["dense_macs_per_row"], cfg["batch"], cfg["num_tables"],
                       cfg["k"], cfg["dim"])
    per_batch = r["seconds_per_batch"]
    return {"config": cfg, "batches": batches, "timed_batches": steps,
            "extrapolated": steps != batches, "measured_s": per_batch * batches,
            "measured_s_per_batch": per_batch, "paper_s": dict(PAPER_SECONDS),
            "floor": {**r["floor"], **floor, "floor_s": floor["floor_s_per_batch"] * batches},
            "measured_over_floor": per_batch / floor["floor_s_per_batch"], "run": r}


def tables_count(requested, max_rows, dim, available=None, fraction=0.6):
    """Tables at every size of the tables section: `requested`, fewer when the largest
    size's tables would take more than `fraction` of the available memory."""
    available = mem_available_bytes() if available is None else available
    per_table = max_rows * dim * 4
    if available is None or requested * per_table <= fraction * available:
        return requested
    return max(1, min(requested, int(fraction * available // per_table)))


def tables_section(work_dir, sizes, count=8, steps=30, warmup=5, pool=8, seed=0, log=print):
    """Step time of the DLRM model at each table size, the same table count at each, a child
    each. Returns a dict: `num_tables` (used), `requested_tables`, `points` (per size)."""
    sizes = sorted(int(s) for s in sizes)
    used = tables_count(count, sizes[-1], DLRM["dim"])
    points = []
    for rows in sizes:
        log(f"tables: {used} tables of {rows:,} x {DLRM['dim']}, {steps} timed steps "
            "(child process)")
        r = run_child("dlrm", {**DLRM, "num_tables": used, "table_rows": rows, "steps": steps,
                               "warmup": warmup, "pool": pool, "seed": seed},
                      os.path.join(work_dir, "logs", f"tables-{rows}.log"))
        points.append({"table_rows": rows, **r})
    for p in points:
        p["ratio"] = p["seconds_per_batch"] / points[0]["seconds_per_batch"]
    return {"num_tables": used, "requested_tables": count,
            "table_gib": used * sizes[-1] * DLRM["dim"] * 4 / 2 ** 30,
            "mem_available_gib": (mem_available_bytes() or 0) / 2 ** 30, "points": points}


# ------------------------------------------------------------------------------- printing


def format_table(headers, rows):
    """Rows of cells as aligned text: the first column left-aligned, the others right."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths)]
                     + [line(r) for r in cells[1:]])


if __name__ == "__main__":
    task, args = sys.argv[1], json.loads(sys.argv[2])
    result = CHILDREN[task](args)
    print(RESULT_MARK + json.dumps(result), flush=True)
