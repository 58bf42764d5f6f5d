"""Ranking metrics (HR@10, NDCG@10, Recall@20) of trained runs' recommendations, beside the
popularity ranking, on a build's held-out users (`deepmix_tf.training.ranking`).

    python -m experiments.evaluate_ranking \
        --model_dir artifacts/models/deepmix-rating --model_dir artifacts/models/biases-rating

writes results/ranking.json and the "ranking" section of results/README.md.
"""

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("model_dir", None, "Run folders of experiments.train (one build).",
                          required=True)
flags.DEFINE_enum("split", "test", ["validation", "test"], "The held-out users.")
flags.DEFINE_string("output", "results/ranking.json", "JSON of the metrics.")
flags.DEFINE_string("readme", "results/README.md", "Markdown file whose ranking section is "
                    "(re)written; empty: none.")



def main(argv):
    del argv
    import json
    import os

    from deepmix_tf.files import write_json, write_text
    from deepmix_tf.training import ranking

    from deepmix_tf.data import tfrecords

    runs = {}
    for model_dir in FLAGS.model_dir:
        with open(os.path.join(model_dir, "metrics.json")) as f:
            runs[model_dir] = json.load(f)
    builds = {run["build"]["dir"] for run in runs.values()}
    if len(builds) != 1:
        raise SystemExit(f"the runs come from different builds: {sorted(builds)}")
    dataset_dir = builds.pop()
    meta = tfrecords.read_metadata(dataset_dir)
    held = ranking.HeldOut(dataset_dir, meta, FLAGS.split)  # read once for every row
    rows = [{"model": "popularity", "model_dir": None, **ranking.popularity(held)}]
    for model_dir, run in runs.items():
        rows.append({"model": run["model"], "model_dir": model_dir,
                     **ranking.evaluate_run(model_dir, held)})
        print(rows[-1])
    command = "python -m experiments.evaluate_ranking " + " ".join(
        f"--model_dir {d}" for d in FLAGS.model_dir) + (
        f" --split {FLAGS.split}" if FLAGS.split != "test" else "")
    out = {"dataset": meta["dataset"], "split": FLAGS.split, "command": command,
           "relevant_at_least": meta["items"]["relevant_at_least"], "rows": rows}
    write_json(FLAGS.output, out)
    text = ranking.markdown(out)
    print(text)
    if FLAGS.readme:
        old = open(FLAGS.readme).read() if os.path.exists(FLAGS.readme) else ""
        begin, end = ranking.SECTION
        section = f"{begin}\n{text}{end}\n"
        if begin in old and end in old:
            new = old[:old.index(begin)] + section + old[old.index(end) + len(end) + 1:]
        else:
            new = old.rstrip("\n") + "\n\n" + section
        write_text(FLAGS.readme, new)


if __name__ == "__main__":
    app.run(main)
