"""Time to embed every movie text with the pretrained encoder (sentence embeddings).

    python -m experiments.benchmark_text --data_dir ../shared/data [--task=rating]
    python -m experiments.benchmark_text --data_dir ../shared/data \
        --compare_sentence_transformers --reference_python .venv-reference/bin/python

Prints seconds and texts/s for all movies of rel-movielens1m (3,883), after a warm-up
batch, so the figure is comparable with sentence-transformers' `model.encode(texts)`.

With --compare_sentence_transformers it also times the original model (torch
sentence-transformers, in its own process started with --reference_python: see
benchmarks/requirements-text.txt) on the same texts, model files and batch size,
alternating the two for --repeats rounds, and prints each round, the medians, the ratio and
how closely the two sets of embeddings agree (cosine of each text's pair).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Data root holding rel-movielens1m/.")
flags.DEFINE_enum("task", "rating", ["rating", "genre"], "Which text template.")
flags.DEFINE_integer("batch_size", 64, "Texts per forward pass.")
flags.DEFINE_integer("limit", 0, "Only the first N texts (0: all).")
flags.DEFINE_bool("compare_sentence_transformers", False,
                  "Also time sentence-transformers on the same texts, alternating runs.")
flags.DEFINE_string("reference_python", sys.executable,
                    "--compare_sentence_transformers: the Python that has torch and "
                    "sentence-transformers (benchmarks/requirements-text.txt).")
flags.DEFINE_integer("repeats", 3, "--compare_sentence_transformers: rounds.")
flags.DEFINE_string("output", None, "Write the figures to this JSON file.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_NOT_INSTALLED = 3  # exit status of benchmarks/sentence_transformers_encode.py


def _reference_run(texts_path, preset, workdir, round_):
    """One timed sentence-transformers run in its own process: (seconds, embeddings path)."""
    result = os.path.join(workdir, f"reference{round_}.json")
    embeddings = os.path.join(workdir, f"reference{round_}.npy")
    command = [FLAGS.reference_python,
               os.path.join(REPO, "benchmarks", "sentence_transformers_encode.py"),
               "--texts", texts_path, "--model", preset, "--result", result,
               "--embeddings", embeddings, "--batch_size", str(FLAGS.batch_size)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode == REFERENCE_NOT_INSTALLED:
        sys.exit(f"{FLAGS.reference_python} has no sentence-transformers: install "
                 "benchmarks/requirements-text.txt into a separate environment and pass its "
                 "Python with --reference_python")
    if done.returncode != 0 or not os.path.isfile(result):
        sys.stderr.write(done.stderr)
        sys.exit(f"the sentence-transformers run failed (exit status {done.returncode}); "
                 "its stderr is above")
    with open(result) as f:
        return json.load(f), embeddings


def main(argv):
    del argv
    import numpy as np

    from deepmix_tf.data.spec import load_spec, movielens_spec
    from deepmix_tf.files import write_json
    from deepmix_tf.text import SentenceEncoder
    from deepmix_tf.text.pipeline import item_texts

    _, texts, _ = item_texts(load_spec(movielens_spec(FLAGS.task)), FLAGS.data_dir)
    texts = texts[:FLAGS.limit] if FLAGS.limit else texts
    encoder = SentenceEncoder()
    encoder.embed(texts[:FLAGS.batch_size], batch_size=FLAGS.batch_size)  # warm-up

    def ours():
        start = time.perf_counter()
        embeddings = encoder.embed(texts, batch_size=FLAGS.batch_size)
        return time.perf_counter() - start, embeddings

    if not FLAGS.compare_sentence_transformers:
        seconds, embeddings = ours()
        print(f"embedded {len(texts)} texts ({embeddings.shape[1]} dims) in {seconds:.1f} s: "
              f"{len(texts) / seconds:.1f} texts/s, batch {FLAGS.batch_size}")
        if FLAGS.output:
            write_json(FLAGS.output, {"texts": len(texts), "batch_size": FLAGS.batch_size,
                                      "deepmix_tf_seconds": seconds})
        return

    rounds = []
    with tempfile.TemporaryDirectory() as workdir:
        texts_path = os.path.join(workdir, "texts.json")
        with open(texts_path, "w", encoding="utf-8") as f:
            json.dump(texts, f)
        for r in range(FLAGS.repeats):
            seconds, embeddings = ours()
            reference, reference_path = _reference_run(texts_path, encoder.preset, workdir, r)
            cosine = np.sum(embeddings * np.load(reference_path), axis=1)  # both unit length
            rounds.append({"deepmix_tf_s": seconds, "sentence_transformers_s":
                           reference["seconds"], "min_cosine": float(cosine.min())})
            print(f"round {r + 1}/{FLAGS.repeats}: deepmix_tf {seconds:.1f} s, "
                  f"sentence-transformers {reference['seconds']:.1f} s, "
                  f"lowest cosine between the two {cosine.min():.6f}", flush=True)
    ours_s = statistics.median(r["deepmix_tf_s"] for r in rounds)
    theirs_s = statistics.median(r["sentence_transformers_s"] for r in rounds)
    print(f"{len(texts)} texts, batch {FLAGS.batch_size}, medians of {len(rounds)} rounds: "
          f"deepmix_tf {ours_s:.1f} s ({len(texts) / ours_s:.1f} texts/s), "
          f"sentence-transformers {theirs_s:.1f} s ({len(texts) / theirs_s:.1f} texts/s, "
          f"torch {reference['torch']}, {reference['torch_threads']} threads); "
          f"ratio {theirs_s / ours_s:.2f}x")
    if FLAGS.output:
        write_json(FLAGS.output, {
            "texts": len(texts), "task": FLAGS.task, "batch_size": FLAGS.batch_size,
            "rounds": rounds, "deepmix_tf_seconds": ours_s,
            "sentence_transformers_seconds": theirs_s, "ratio": theirs_s / ours_s,
            "reference": {k: reference[k] for k in ("torch", "torch_threads",
                                                     "sentence_transformers")}})


if __name__ == "__main__":
    app.run(main)
