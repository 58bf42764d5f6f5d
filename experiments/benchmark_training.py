"""Training-step speed of a model's network on one real batch, with and without XLA; and
DeepMix against DeepCTR's DCNMix, side by side.

    python -m experiments.benchmark_training --model=deepmix \
        --dataset_dir artifacts/tfrecords/movielens1m-rating

Times `--steps` optimizer steps on a fixed preprocessed batch of the training split (no
input pipeline), after a warm-up, and prints ms/step and examples/s per setting.

    python -m experiments.benchmark_training --compare_deepctr [--repeats 3] [--steps 100] \
        [--output results/speed.json]

times DeepMix and DeepCTR 0.9.4's `DCNMix` at equal settings (rating task, 2 cross layers,
4 experts, low rank 32, DNN 256-128, embedding 16, Adam, mse, batch `--batch_size`) on the
same preprocessed training batches, each run in a fresh process of its own, alternating
(DeepMix, DeepCTR, DeepMix, ... for `--repeats` rounds), and prints the median examples/s
of each and their ratio. DeepMix runs `--steps_per_execution` (10) steps per call into
TensorFlow, as Keras' `compile` offers; DCNMix runs tf-keras' default of 1 unless
`--deepctr_steps_per_execution` says otherwise. DeepCTR needs
`pip install --no-deps -r benchmarks/requirements.txt` and runs with TF_USE_LEGACY_KERAS=1
(benchmarks/deepctr_dcnmix.py); DeepMix (Keras 3) runs in `--worker=deepmix` processes of
this program.
"""

import dataclasses
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from deepmix_tf.files import write_json

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "deepmix", "Model (see deepmix_tf.models.MODELS).")
flags.DEFINE_string("dataset_dir", "artifacts/tfrecords/movielens1m-rating", "A TFRecord "
                    "build (its dataset's presets apply).")
flags.DEFINE_integer("batch_size", 1024, "Batch size.")
flags.DEFINE_integer("steps", 100, "Timed steps per setting (per run with --compare_deepctr).")
flags.DEFINE_list("jit_compile", ["false", "true"], "XLA settings to time (DeepMix's only, "
                  "with --compare_deepctr).")
flags.DEFINE_integer("steps_per_execution", 10, "DeepMix's Keras `steps_per_execution`: "
                     "training steps per call into TensorFlow.")
flags.DEFINE_integer("deepctr_steps_per_execution", 1, "--compare_deepctr: DCNMix's "
                     "`steps_per_execution` (1, tf-keras' default, is how DeepCTR's examples "
                     "train).")
flags.DEFINE_bool("compare_deepctr", False, "Time DeepMix against DeepCTR's DCNMix at equal "
                  "settings on the rating task, each in its own processes.")
flags.DEFINE_integer("repeats", 3, "--compare_deepctr: rounds; each round runs every model "
                     "once, and the medians over rounds are reported.")
flags.DEFINE_integer("warmup_steps", 10, "--compare_deepctr: untimed steps before the timed "
                     "ones in every run.")
flags.DEFINE_integer("num_batches", 16, "--compare_deepctr: distinct real training batches "
                     "(shuffled with the seed), cycled from memory by both models.")
flags.DEFINE_string("data_dir", None, "--compare_deepctr: data root to build the TFRecords "
                    "from when --dataset_dir has no build (default: as experiments.train).")
flags.DEFINE_string("output", None, "--compare_deepctr: write the figures to this JSON file.")
flags.DEFINE_string("deepctr_python", None, "--compare_deepctr: the Python that has DeepCTR "
                    "installed (default: this one).")
flags.DEFINE_enum("worker", None, ["deepmix"], "Internal: run one timed DeepMix run of "
                  "--worker_spec and write --worker_result.")
flags.DEFINE_string("worker_spec", None, "Internal: spec JSON of a --worker run.")
flags.DEFINE_string("worker_result", None, "Internal: result JSON of a --worker run.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEEPCTR_VERSION = "0.9.4"
DEEPCTR_NOT_INSTALLED = 3  # exit status of benchmarks/deepctr_dcnmix.py


def main(argv):
    del argv
    if FLAGS.worker:
        return _deepmix_worker(FLAGS.worker_spec, FLAGS.worker_result)
    if FLAGS.compare_deepctr:
        return _compare_deepctr()
    import keras
    import tensorflow as tf

    from deepmix_tf.data import tfrecords
    from deepmix_tf.models import build_model, load_tables
    from deepmix_tf.tasks import make_task
    from deepmix_tf.training.trainer import default_config

    meta = tfrecords.read_metadata(FLAGS.dataset_dir)
    for jit in FLAGS.jit_compile:
        config = default_config(meta["spec_path"], FLAGS.model, batch_size=FLAGS.batch_size,
                                jit_compile=jit.lower() == "true",
                                steps_per_execution=FLAGS.steps_per_execution)
        preprocessor, network, _ = build_model(config, meta,
                                               load_tables(FLAGS.dataset_dir, config, meta))
        features, labels = next(iter(tfrecords.make_dataset(
            FLAGS.dataset_dir, "train", config.batch_size)))
        x = preprocessor({k: features[k] for k in preprocessor.input})
        batches = tf.data.Dataset.from_tensors((x, labels)).repeat(FLAGS.steps)
        network.compile(keras.optimizers.Adam(config.learning_rate),
                        make_task(meta["task"]).loss(config),
                        jit_compile=config.jit_compile,
                        steps_per_execution=config.steps_per_execution)
        # Tracing and compilation.
        network.fit(batches.take(5 * config.steps_per_execution), verbose=0)
        start = time.perf_counter()
        network.fit(batches, verbose=0)
        seconds = (time.perf_counter() - start) / FLAGS.steps
        print(f"{FLAGS.model} {meta['dataset']} jit_compile={config.jit_compile}: "
              f"{seconds * 1000:.1f} ms/step, {config.batch_size / seconds:,.0f} examples/s")


# ------------------------------------------------------------------ DeepMix vs DeepCTR


def comparison_config(batch_size, steps_per_execution=1):
    """DeepMix at the settings of the comparison: DCNMix's cross network (2 layers, 4 experts,
    low rank 32, tanh as in DeepCTR), DNN 256-128 (DeepMix's scoring MLP), embeddings of 16,
    Adam at 1e-3; everything else is DeepMix's rating default (one residual block of hidden
    width 0.25x, the `towers` form). `steps_per_execution` changes how often Keras returns
    to Python, not what a step computes."""
    from deepmix_tf.training.trainer import default_config

    return default_config("movielens1m-rating", "deepmix", embedding_dim=16, cross_layers=2,
                          num_experts=4, low_rank=32, cross_activation="tanh",
                          learning_rate=1e-3, head_units=[256, 128], loss="mse",
                          batch_size=batch_size, steps_per_execution=steps_per_execution)


def _ensure_build(dataset_dir, data_dir):
    """The TFRecord build at `dataset_dir`, built from the data root when missing (its folder
    name is the spec's name)."""
    from deepmix_tf.data import spec, tfrecords

    if os.path.isfile(os.path.join(dataset_dir, tfrecords.METADATA)):
        return
    name = os.path.basename(os.path.normpath(dataset_dir))
    if name not in spec.builtin_specs():
        sys.exit(f"{dataset_dir} has no TFRecord build, and its folder name is not a shipped "
                 f"spec ({', '.join(spec.builtin_specs())}) to build: python -m "
                 "experiments.build_tfrecords --dataset D --output_dir artifacts/tfrecords")
    print(f"{dataset_dir} has no TFRecord build; building it")
    tfrecords.build_tfrecords(name, data_dir, os.path.dirname(os.path.normpath(dataset_dir)))


def _prepare_batches(dataset_dir, config, num_batches, path):
    """Preprocesses `num_batches` shuffled training batches once and saves them for both
    models. Returns (DeepCTR's sparse features [(name, vocabulary size)], its dense features
    [(name, width)], the number of batches)."""
    import numpy as np

    from benchmarks import timing
    from deepmix_tf.data import tfrecords
    from deepmix_tf.models import feature_names, load_tables
    from deepmix_tf.models.preprocessing import build_preprocessor, row_input
    from deepmix_tf.models.stacking import embedding_rows

    meta = tfrecords.read_metadata(dataset_dir)
    tables = load_tables(dataset_dir, config, meta)
    preprocessor = build_preprocessor(meta, feature_names(config, meta),
                                      {name: ids for name, (ids, _) in tables.items()})
    parts, labels = {}, []
    batches = tfrecords.make_dataset(dataset_dir, "train", config.batch_size,
                                     shuffle=True, seed=config.seed, drop_remainder=True)
    for features, label in batches.take(num_batches):
        x = preprocessor({k: features[k] for k in preprocessor.input})
        for name, value in x.items():
            parts.setdefault(name, []).append(np.asarray(value))
        labels.append(label.numpy())
    arrays = {name: np.concatenate(value) for name, value in parts.items()}
    # DeepCTR gets each dense-table row itself (DeepMix looks it up in its graph from
    # `<table>_row`, a fixed table): the same standardized values.
    for name, (_, table) in tables.items():
        arrays[name] = table[arrays[row_input(name)]]
    timing.save_batches(path, arrays, np.concatenate(labels).astype(np.float32))
    sparse, dense = [], []
    for f in meta["features"]:
        if f["name"] not in arrays:
            continue
        if f["type"] == "categorical":
            sparse.append((f["name"], embedding_rows(f)))
        else:
            value = arrays[f["name"]]
            dense.append((f["name"], int(value.shape[1]) if value.ndim > 1 else 1))
    dense += [(name, int(table.shape[1])) for name, (_, table) in tables.items()]
    return sparse, dense, len(labels)


def _run_worker(command, flag_names, spec, workdir, name, env):
    """Runs one timed run in a new process; its result dict, or exits with its stderr."""
    from benchmarks import timing

    spec_path = os.path.join(workdir, f"{name}.spec.json")
    result_path = os.path.join(workdir, f"{name}.result.json")
    write_json(spec_path, spec)
    if os.path.exists(result_path):
        os.remove(result_path)
    spec_flag, result_flag = flag_names
    done = subprocess.run(command + [spec_flag, spec_path, result_flag, result_path],
                          cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not os.path.isfile(result_path):
        sys.stderr.write(done.stderr)
        if done.returncode == DEEPCTR_NOT_INSTALLED:
            sys.exit(f"deepctr not installed for {command[0]}: {command[0]} -m pip install "
                     "--no-deps -r benchmarks/requirements.txt (or pass --deepctr_python)")
        sys.exit(f"the {name} run failed (exit status {done.returncode}); its stderr is above. "
                 f"Command: {shlex.join(command)}")
    return timing.read_json(result_path)


def _deepmix_worker(spec_path, result_path):
    """One timed DeepMix run (Keras 3) of a spec written by `_compare_deepctr`."""
    import keras
    import tensorflow as tf

    from benchmarks import timing
    from deepmix_tf.data import tfrecords
    from deepmix_tf.models import Config, build_model, load_tables

    spec = timing.read_json(spec_path)
    config = Config(**spec["config"])
    keras.utils.set_random_seed(config.seed)
    meta = tfrecords.read_metadata(spec["dataset_dir"])
    _, network, _ = build_model(config, meta, load_tables(spec["dataset_dir"], config, meta))
    network.compile(keras.optimizers.Adam(config.learning_rate), config.loss,
                    jit_compile=config.jit_compile,
                    steps_per_execution=config.steps_per_execution)
    features, labels = timing.load_batches(spec["batches"], list(network.input),
                                           config.batch_size)
    seconds, loss, fit_seconds = timing.time_fit(network, features, labels, spec["steps"],
                                                 spec["warmup_steps"], keras.callbacks.Callback,
                                                 config.steps_per_execution)
    write_json(result_path, timing.result(
        "deepmix", seconds, spec["steps"], config.batch_size, loss, fit_seconds=fit_seconds,
        jit_compile=config.jit_compile, steps_per_execution=config.steps_per_execution,
        parameters=int(network.count_params()),
        versions={"tensorflow": tf.__version__, "keras": keras.__version__}))


def _check_deepctr(python):
    """Exits with the install command when `python` has no DeepCTR; warns on another
    version. Reads the installed metadata only (importing DeepCTR loads TensorFlow)."""
    probe = ("import importlib.metadata as m, sys\n"
             "try:\n    print(m.version('deepctr'))\n"
             "except m.PackageNotFoundError:\n    sys.exit(3)\n")
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    if done.returncode == DEEPCTR_NOT_INSTALLED:
        sys.exit(f"deepctr not installed for {python}: {python} -m pip install --no-deps -r "
                 "benchmarks/requirements.txt (or pass --deepctr_python)")
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        sys.exit(f"{python} could not be asked for its DeepCTR version (exit status "
                 f"{done.returncode}); its stderr is above")
    version = done.stdout.strip()
    if version != DEEPCTR_VERSION:
        print(f"warning: {python} has DeepCTR {version}; the comparison is meant for "
              f"{DEEPCTR_VERSION}")


def _compare_deepctr():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    if FLAGS.model != "deepmix":
        sys.exit("--compare_deepctr times DeepMix on the rating task (DCNMix regression); "
                 "leave --model at its default")
    if FLAGS.repeats < 1 or FLAGS.steps < 1 or FLAGS.warmup_steps < 1 or FLAGS.num_batches < 1:
        sys.exit("--repeats, --steps, --warmup_steps and --num_batches must be >= 1")
    for name in ("steps_per_execution", "deepctr_steps_per_execution"):
        per_call = getattr(FLAGS, name)
        if per_call < 1 or FLAGS.steps % per_call or FLAGS.warmup_steps % per_call:
            sys.exit(f"--{name} ({per_call}) must be >= 1 and divide --steps "
                     f"({FLAGS.steps}) and --warmup_steps ({FLAGS.warmup_steps})")
    command = "python -m experiments.benchmark_training " + shlex.join(sys.argv[1:])
    deepctr_python = FLAGS.deepctr_python or sys.executable
    _check_deepctr(deepctr_python)
    config = comparison_config(FLAGS.batch_size, FLAGS.steps_per_execution)
    jits = [j.lower() == "true" for j in FLAGS.jit_compile]
    dataset_dir = os.path.abspath(FLAGS.dataset_dir)
    _ensure_build(dataset_dir, FLAGS.data_dir)
    load_start = os.getloadavg()

    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    deepmix_env = {k: v for k, v in env.items() if k != "TF_USE_LEGACY_KERAS"}
    deepctr_env = {**env, "TF_USE_LEGACY_KERAS": "1"}
    deepmix_command = [sys.executable, "-m", "experiments.benchmark_training", "--worker=deepmix"]
    deepctr_command = [deepctr_python, "-m", "benchmarks.deepctr_dcnmix"]

    with tempfile.TemporaryDirectory(prefix="deepmix-vs-deepctr-") as workdir:
        batches = os.path.join(workdir, "batches.npz")
        sparse, dense, num_batches = _prepare_batches(dataset_dir, config, FLAGS.num_batches,
                                                      batches)
        common = {"batches": batches, "batch_size": config.batch_size, "steps": FLAGS.steps,
                  "warmup_steps": FLAGS.warmup_steps, "seed": config.seed}
        deepctr_spec = {**common, "sparse": sparse, "dense": dense,
                        "embedding_dim": config.embedding_dim,
                        "cross_layers": config.cross_layers, "num_experts": config.num_experts,
                        "low_rank": config.low_rank,
                        "dnn_hidden_units": list(config.head_units),
                        "learning_rate": config.learning_rate, "loss": config.loss,
                        "steps_per_execution": FLAGS.deepctr_steps_per_execution}
        print(f"{num_batches} batches of {config.batch_size}; {FLAGS.warmup_steps} warm-up + "
              f"{FLAGS.steps} timed steps per run; {FLAGS.repeats} round(s); every run in a "
              f"new process; steps per execution: DeepMix {config.steps_per_execution}, "
              f"DCNMix {FLAGS.deepctr_steps_per_execution}")
        runs = {("deepmix", jit): [] for jit in jits}
        runs[("deepctr", None)] = []
        # Alternating: DeepMix (first XLA setting), DeepCTR, DeepMix (next setting), ...
        order = [("deepmix", jits[0]), ("deepctr", None)] + [("deepmix", j) for j in jits[1:]]
        for round_ in range(FLAGS.repeats):
            for key in order:
                model, jit = key
                if model == "deepmix":
                    spec = {**common, "dataset_dir": dataset_dir, "config": dataclasses.asdict(
                        config.replace(jit_compile=jit))}
                    out = _run_worker(deepmix_command, ("--worker_spec", "--worker_result"),
                                      spec, workdir, f"deepmix-jit-{jit}", deepmix_env)
                    label = f"DeepMix (jit_compile={jit})"
                else:
                    out = _run_worker(deepctr_command, ("--spec", "--result"), deepctr_spec,
                                      workdir, "deepctr", deepctr_env)
                    label = f"DeepCTR {out['versions']['deepctr']} DCNMix"
                runs[key].append(out)
                print(f"round {round_ + 1}/{FLAGS.repeats} {label}: "
                      f"{out['ms_per_step']:.1f} ms/step, {out['examples_per_s']:,.0f} "
                      f"examples/s (loss {out['loss']:.3f})", flush=True)

    def median(key):
        return statistics.median(r["examples_per_s"] for r in runs[key])

    deepctr = median(("deepctr", None))
    deepctr_version = runs[("deepctr", None)][0]["versions"]["deepctr"]
    if deepctr_version != DEEPCTR_VERSION:
        print(f"warning: DeepCTR {deepctr_version} timed, not {DEEPCTR_VERSION}")
    by_jit = {}
    for jit in jits:
        value = median(("deepmix", jit))
        by_jit[str(jit).lower()] = {
            "examples_per_s": value, "ratio": value / deepctr,
            "ms_per_step": statistics.median(r["ms_per_step"] for r in runs[("deepmix", jit)]),
            "runs_examples_per_s": [r["examples_per_s"] for r in runs[("deepmix", jit)]]}
    best = max(jits, key=lambda j: by_jit[str(j).lower()]["examples_per_s"])
    deepmix = by_jit[str(best).lower()]["examples_per_s"]
    print(f"\nmedians over {FLAGS.repeats} round(s), batch {config.batch_size}, "
          f"{FLAGS.steps} steps:")
    for jit in jits:
        figures = by_jit[str(jit).lower()]
        print(f"  DeepMix jit_compile={jit}: {figures['examples_per_s']:,.0f} examples/s "
              f"({figures['ms_per_step']:.1f} ms/step), {figures['ratio']:.2f}x DCNMix")
    print(f"  DeepCTR {deepctr_version} DCNMix: {deepctr:,.0f} examples/s")
    print(f"ratio DeepMix / DCNMix: {deepmix / deepctr:.2f} (DeepMix with "
          f"jit_compile={best})")

    if FLAGS.output:
        first = {key: runs[key][0] for key in runs}
        write_json(FLAGS.output, {
            "deepmix_examples_per_s": deepmix,
            "deepctr_dcnmix_examples_per_s": deepctr,
            "ratio": deepmix / deepctr,
            "deepmix_jit_compile": best,
            "deepmix_by_jit_compile": by_jit,
            "deepctr_dcnmix_runs_examples_per_s": [
                r["examples_per_s"] for r in runs[("deepctr", None)]],
            "settings": {
                "task": "rating", "dataset_dir": FLAGS.dataset_dir,
                "batch_size": config.batch_size, "steps": FLAGS.steps,
                "warmup_steps": FLAGS.warmup_steps, "repeats": FLAGS.repeats,
                "num_batches": num_batches, "statistic": "median over rounds",
                "clock": "steady state: from the end of the last warm-up step to the end of "
                         "the last step, inside one fit call (benchmarks/timing.py)",
                "input": "preprocessed shuffled training batches cycled from memory "
                         "(tf.data from_tensor_slices), the same for both",
                "optimizer": f"Adam({config.learning_rate})", "loss": config.loss,
                "deepmix_config": dataclasses.asdict(config.replace(jit_compile=None)),
                "deepctr_dcnmix": {
                    "cross_num": config.cross_layers, "num_experts": config.num_experts,
                    "low_rank": config.low_rank, "dnn_hidden_units": list(config.head_units),
                    "embedding_dim": config.embedding_dim, "task": "regression",
                    "sparse_features": sparse, "dense_features": dense,
                    "jit_compile": False,
                    "steps_per_execution": FLAGS.deepctr_steps_per_execution,
                    "other_arguments": "DCNMix defaults"},
                "parameters": {"deepmix": first[("deepmix", jits[0])]["parameters"],
                               "deepctr_dcnmix": first[("deepctr", None)]["parameters"]},
            },
            "versions": {**first[("deepmix", jits[0])]["versions"],
                         **first[("deepctr", None)]["versions"]},
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "load_average_start": load_start, "load_average_end": os.getloadavg()},
            "command": command,
        })
        print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
