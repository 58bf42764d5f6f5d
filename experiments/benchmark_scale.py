"""Scale figures of issue 18, side by side in one run (`benchmarks/scale.py` does the work).

    python -m experiments.benchmark_scale                  # every section, full sizes
    python -m experiments.benchmark_scale --sections dlrm,tables
    python -m experiments.benchmark_scale --quick          # a smoke test, in about a minute

Sections (`--sections`, in this order):

- build: Criteo-shaped TSVs of `--rows` rows (generated once into `--work_dir`, reused while
  their stamp matches) built into TFRecords by the streaming build, each build in a child
  process: seconds, rows/s, peak resident memory (its ratio to the smallest size's), bytes.
- read: streaming reads of each build's train split (`make_dataset`, shuffled) for
  `--read_seconds` after a warm-up: rows/s and peak memory.
- train: `--train_steps` steady-state steps (0: one epoch) of the trainer's DLRM (the criteo
  defaults, sparse SGD, streaming input with the preprocessor in the pipeline) on each
  build: steps/s, rows/s, and streaming-read rows/s over training rows/s (goal >= 5).
- dlrm: the DLRM paper's single-socket configuration (8 tables of 1M x 64, 512 dense,
  bottom 512-512-64, top 1024-1024-1024-1, batch 2048, 100 indices per lookup) on cycled
  random batches, seconds for `--dlrm_batches` batches beside the paper's 256 s (Caffe2, one
  Xeon 6138 socket) and 62 s (one V100) and this machine's floor (measured matmul rate and
  random-gather bandwidth); measured / floor (goal <= 1.5).
- tables: the same model's step time at `--table_rows` rows per table (fewer tables than
  `--tables_count` when the largest would not fit in 60% of the available memory, the same
  count at every size): ratio to the smallest (goal: the largest within 1.3x).

Every timed measurement runs in a child process of its own, one after another. All figures
go to `--output` as JSON as well (rewritten after each section); child logs are under
`<work_dir>/logs/`.
"""

import os
import sys
import time

from absl import app, flags

from benchmarks import scale
from deepmix_tf.files import write_json

SECTIONS = ["build", "read", "train", "dlrm", "tables"]

FLAGS = flags.FLAGS
flags.DEFINE_list("sections", SECTIONS, f"Sections to run, of {','.join(SECTIONS)}.")
flags.DEFINE_list("rows", ["1000000", "10000000", "45000000"], "build/read/train: "
                  "Criteo-shaped rows per size.")
flags.DEFINE_integer("vocab", 100_000, "Values per categorical field of the generated data "
                     "(Zipf frequencies, --zipf).", lower_bound=1)
flags.DEFINE_float("zipf", 1.05, "Zipf exponent of the generated categorical values.",
                   lower_bound=0)
flags.DEFINE_integer("seed", 0, "Data and model seed.")
flags.DEFINE_string("work_dir", "/tmp/deepmix-scale", "Generated data, builds and child logs.")
flags.DEFINE_string("output", "artifacts/benchmarks/scale.json", "All figures, as JSON.")
flags.DEFINE_integer("warmup", 5, "Untimed batches or steps before each timed segment.",
                     lower_bound=1)
flags.DEFINE_float("read_seconds", 30.0, "read: seconds of timed streaming per size.")
flags.DEFINE_integer("read_batch", 2048, "read: batch size.", lower_bound=1)
flags.DEFINE_integer("train_steps", 300, "train: timed steps per size (0: one epoch).",
                     lower_bound=0)
flags.DEFINE_integer("train_batch", 2048, "train: batch size.", lower_bound=1)
flags.DEFINE_integer("dlrm_batches", 1000, "dlrm: batches the figure is for (given "
                     "explicitly, all of them are timed).", lower_bound=1)
flags.DEFINE_integer("dlrm_timed", 100, "dlrm: batches timed, extrapolated to "
                     "--dlrm_batches (unless that is given).", lower_bound=1)
flags.DEFINE_integer("dlrm_table_rows", 1_000_000, "dlrm: rows per table (the paper's 1M).",
                     lower_bound=100)
flags.DEFINE_list("table_rows", ["100000", "1000000", "10000000"], "tables: rows per table.")
flags.DEFINE_integer("tables_count", 8, "tables: tables per model (reduced to fit memory).",
                     lower_bound=1)
flags.DEFINE_integer("tables_steps", 30, "tables: timed steps per size.", lower_bound=1)
flags.DEFINE_bool("quick", False, "Shrink everything for a smoke test (flags given "
                  "explicitly still apply).")

QUICK = {"rows": ["20000", "40000"], "vocab": 10_000, "read_seconds": 3.0, "train_steps": 10,
         "warmup": 2, "dlrm_timed": 3, "dlrm_table_rows": 10_000,
         "table_rows": ["1000", "10000"], "tables_steps": 3}
QUICK_FLOOR = {"matmul": 10, "copy": 5, "gather": 10}


def setting(name):
    """A flag's value; under --quick, the quick value unless the flag was given."""
    if FLAGS.quick and name in QUICK and not FLAGS[name].present:
        return QUICK[name]
    return FLAGS[name].value


def main(argv):
    del argv
    unknown = sorted(set(FLAGS.sections) - set(SECTIONS))
    if unknown:
        raise app.UsageError(f"unknown sections {unknown}; choose from {SECTIONS}")
    sizes = sorted(int(r) for r in setting("rows"))
    vocab, zipf, seed, warmup = setting("vocab"), FLAGS.zipf, FLAGS.seed, setting("warmup")
    work_dir = FLAGS.work_dir
    os.makedirs(work_dir, exist_ok=True)
    started = time.perf_counter()
    info = scale.machine()
    table_rows = sorted(int(r) for r in setting("table_rows"))
    results = {"machine": info, "quick": FLAGS.quick, "sections": {},
               "settings": {name: setting(name) for name in (
                   "vocab", "zipf", "seed", "warmup", "read_seconds", "read_batch",
                   "train_steps", "train_batch", "dlrm_batches", "dlrm_timed",
                   "dlrm_table_rows", "tables_count", "tables_steps")}}
    results["settings"].update(rows=sizes, table_rows=table_rows)
    print(f"machine: {info['cpu_count']} cores ({info['cpus_usable']} usable), "
          f"{info['cpu_model']}, {info['mem_total_gib']:.1f} GiB RAM "
          f"({info['mem_available_gib']:.1f} GiB available); TensorFlow "
          f"{info['versions']['tensorflow']}, Keras {info['versions']['keras']}")
    print("float32 throughout (no mixed precision); every timed figure is from a child "
          "process of its own, one at a time.\n")

    def log(message):
        print(f"  [{time.perf_counter() - started:6.0f} s] {message}", file=sys.stderr,
              flush=True)

    def save():
        results["wall_seconds"] = time.perf_counter() - started
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
        write_json(FLAGS.output, results)

    out = results["sections"]
    if "build" in FLAGS.sections:
        out["build"] = scale.build_section(sizes, work_dir, vocab, zipf, seed, log)
        _print_build(out["build"], vocab)
        save()
    if "read" in FLAGS.sections:
        out["read"] = scale.read_section(sizes, work_dir, vocab, zipf, seed,
                                         FLAGS.read_batch, setting("read_seconds"), warmup, log)
        _print_read(out["read"])
        save()
    if "train" in FLAGS.sections:
        out["train"] = scale.train_section(sizes, work_dir, vocab, zipf, seed,
                                           FLAGS.train_batch, setting("train_steps"), warmup,
                                           log)
        reads = {r["rows"]: r["rows_per_s"] for r in out.get("read", [])}
        for r in out["train"]:
            if r["rows"] in reads:
                r["read_over_train"] = reads[r["rows"]] / r["rows_per_s"]
        _print_train(out["train"])
        save()
    if "dlrm" in FLAGS.sections:
        explicit = FLAGS["dlrm_batches"].present
        out["dlrm"] = scale.dlrm_section(
            work_dir, FLAGS.dlrm_batches, None if explicit else setting("dlrm_timed"), warmup,
            setting("dlrm_table_rows"), QUICK_FLOOR if FLAGS.quick else None, seed=seed,
            log=log)
        _print_dlrm(out["dlrm"], info)
        save()
    if "tables" in FLAGS.sections:
        out["tables"] = scale.tables_section(work_dir, table_rows,
                                             FLAGS.tables_count, setting("tables_steps"),
                                             warmup, seed=seed, log=log)
        _print_tables(out["tables"])
        save()
    save()
    print(f"wrote {FLAGS.output} ({results['wall_seconds']:.0f} s in all)")


def _print_build(rows, vocab):
    print("build: streaming TFRecord build of the criteo spec (GZIP, 4 shards), a child "
          "process per size")
    print(scale.format_table(
        ["rows", "TSV GB", "TSV", "build s", "rows/s", "peak RSS MiB", "base RSS MiB",
         "RSS ratio", "vocab entries", "TFRecord GB"],
        [[f"{r['rows']:,}", f"{r['tsv_bytes'] / 1e9:.2f}",
          "reused" if r["data_reused"] else f"generated in {r['generate_seconds']:.0f} s",
          f"{r['seconds']:.1f}",
          f"{r['rows_per_s']:,.0f}", f"{r['peak_rss_mib']:,.0f}", f"{r['base_rss_mib']:,.0f}",
          f"{r['rss_ratio']:.2f}x", f"{r['vocabulary_entries']:,}",
          f"{r['tfrecord_bytes'] / 1e9:.2f}"] for r in rows]))
    print(f"Memory grows with the vocabulary (26 fields of {vocab:,} values, Zipf), not with "
          "the rows: the build keeps each field's value counts and a few chunks per thread. "
          "Base RSS = after imports; vocab entries = values kept (min_count 10); build s "
          "includes the fingerprint (MD5 of the TSV).\n")


def _print_read(rows):
    print("read: streaming make_dataset(build, 'train', batch, shuffle=True, repeat=True), "
          "a child process per size")
    print(scale.format_table(
        ["rows", "batch", "timed s", "rows read", "rows/s", "passes", "peak RSS MiB"],
        [[f"{r['rows']:,}", r["batch"], f"{r['seconds']:.1f}",
          f"{r['rows_read']:,}", f"{r['rows_per_s']:,.0f}",
          f"{r['passes_over_split']:.2f}", f"{r['peak_rss_mib']:,.0f}"] for r in rows]))
    print()


def _print_train(rows):
    m = rows[0]["model"]
    print(f"train: streaming training of the trainer's DLRM (criteo defaults: embedding "
          f"{m['embedding_dim']}, bottom {'-'.join(map(str, m['bottom_units']))}, top "
          f"{'-'.join(map(str, m['head_units']))}; {m['optimizer']} with sparse embedding "
          "updates; preprocessor in the input pipeline), steady state after warm-up, a child "
          "process per size")
    print(scale.format_table(
        ["rows", "steps", "batch", "timed s", "steps/s", "rows/s", "peak RSS MiB",
         "read rows/s / train rows/s (goal >= 5)"],
        [[f"{r['rows']:,}", r["steps"], r["batch"], f"{r['seconds']:.1f}",
          f"{r['steps_per_s']:.2f}", f"{r['rows_per_s']:,.0f}", f"{r['peak_rss_mib']:,.0f}",
          f"{r['read_over_train']:.1f}" if "read_over_train" in r else "(no read section)"]
         for r in rows]))
    print()


def _print_dlrm(d, info):
    c, f, n = d["config"], d["floor"], d["batches"]
    print(f"dlrm: DLRM single-socket configuration: {c['num_tables']} tables of "
          f"{c['table_rows']:,} x {c['dim']}, {c['num_dense']} dense, bottom "
          f"{c['num_dense']}-{'-'.join(map(str, c['bottom']))}, top "
          f"{'-'.join(map(str, c['top']))}-1, batch {c['batch']}, {c['k']} indices per "
          "lookup; float32, SparseSGD(0.1), jit_compile=False, Keras fit on 8 cycled random "
          "batches")
    how = (f"= {n:,} x {d['run']['seconds']:.2f} s / {d['timed_batches']} timed batches"
           if d["extrapolated"] else f"all {n:,} batches timed")
    rows = [[f"measured, this machine ({info['cpu_count']} cores)", f"{d['measured_s']:.1f}",
             f"{d['measured_s_per_batch'] * 1000:.1f}", how],
            ["paper: Caffe2, one socket of a Xeon 6138 (20 cores)",
             f"{d['paper_s']['caffe2_xeon6138_one_socket_20_cores'] * n / 1000:.1f}",
             f"{d['paper_s']['caffe2_xeon6138_one_socket_20_cores']:.0f}",
             "256 s per 1,000 batches"],
            ["paper: one V100", f"{d['paper_s']['v100'] * n / 1000:.1f}",
             f"{d['paper_s']['v100']:.0f}", "62 s per 1,000 batches"],
            ["floor of this machine", f"{f['floor_s']:.1f}",
             f"{f['floor_s_per_batch'] * 1000:.1f}", "MLP FLOPs / matmul rate + embedding "
             "bytes / random-gather bandwidth"]]
    print(scale.format_table([f"DLRM, {n:,} batches", "seconds", "ms/batch", "how"], rows))
    print(f"measured / floor = {d['measured_over_floor']:.2f} (goal <= 1.5)")
    print("floor terms:")
    print(scale.format_table(["term", "value", "unit"], [
        ["float32 matmul rate (2048x1024 @ 1024x1024, tf.function loop)",
         f"{f['matmul_gflops']:.1f}", "GFLOP/s"],
        [f"streaming copy bandwidth ({f['copy_mib']:.0f} MiB, read + write)",
         f"{f['copy_gbps']:.1f}", "GB/s"],
        [f"random-gather bandwidth ({f['gather_rows_per_call']:,} rows of "
         f"{f['gather_table'][0]:,} x {f['gather_table'][1]}) - used for the embedding term",
         f"{f['gather_gbps']:.1f}", "GB/s"],
        ["MLP FLOPs per batch = 3 x 2 x batch x sum(in x out) of all Dense layers",
         f"{f['mlp_flops_per_batch'] / 1e9:.2f}", "GFLOP"],
        ["embedding bytes per batch = tables x batch x k x dim x 4 B x 2 (gather + scatter)",
         f"{f['embedding_bytes_per_batch'] / 1e6:.0f}", "MB"],
        ["MLP time per batch", f"{f['mlp_s_per_batch'] * 1000:.1f}", "ms"],
        ["embedding time per batch", f"{f['embedding_s_per_batch'] * 1000:.1f}", "ms"],
        ["floor per batch", f"{f['floor_s_per_batch'] * 1000:.1f}", "ms"]]))
    print()


def _print_tables(t):
    note = ("" if t["num_tables"] == t["requested_tables"] else
            f" (fewer than {t['requested_tables']}: {t['requested_tables']} tables of the "
            f"largest size would take more than 60% of the "
            f"{t['mem_available_gib']:.1f} GiB available)")
    print(f"tables: the dlrm model's step time against rows per table, {t['num_tables']} "
          f"tables at every size{note}, batch {scale.DLRM['batch']}, {scale.DLRM['k']} "
          "indices per lookup, a child process per size")
    print(scale.format_table(
        ["rows per table", "tables", "tables GiB", "timed steps", "ms/step", "peak RSS MiB",
         "ratio to smallest (goal: largest <= 1.3)"],
        [[f"{p['table_rows']:,}", t["num_tables"],
          f"{t['num_tables'] * p['table_rows'] * scale.DLRM['dim'] * 4 / 2 ** 30:.2f}",
          p["steps"], f"{p['seconds_per_batch'] * 1000:.1f}", f"{p['peak_rss_mib']:,.0f}",
          f"{p['ratio']:.2f}x"] for p in t["points"]]))
    print()


if __name__ == "__main__":
    app.run(main)
