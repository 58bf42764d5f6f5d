"""The README's own-data example: its CSV and spec train and export with no code written."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO


def readme_spec():
    """The JSON spec block of the README's "Your own data" section."""
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text[text.index("## Your own data"):]
    return json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))


def write_events(path, rows=600, seed=0):
    """A CSV in the README example's columns; the click depends on the category."""
    rng = np.random.default_rng(seed)
    categories = ["books", "garden", "toys", "music"]
    lines = ["user_id,item_id,price,category,tags,clicked"]
    for _ in range(rows):
        category = categories[rng.integers(0, 4)]
        clicked = int(rng.random() < (0.8 if category == "books" else 0.2))
        price = "" if rng.random() < 0.1 else f"{rng.gamma(2, 20):.2f}"
        tags = "|".join(sorted(set(rng.choice(["new", "sale", "gift"], rng.integers(0, 3)))))
        lines.append(f"{rng.integers(1, 50)},{rng.integers(1, 30)},{price},{category},{tags},"
                     f"{clicked}")
    path.write_text("\n".join(lines) + "\n")


def test_the_readme_spec_is_valid():
    from deepmix_tf.data.spec import parse_spec

    spec = parse_spec(readme_spec(), "README.md")
    assert spec.task["type"] == "binary" and len(spec.features) == 5


@pytest.mark.slow
def test_the_readme_example_trains_and_exports_from_the_command_line(tmp_path):
    (tmp_path / "my_spec.json").write_text(json.dumps(readme_spec()))
    write_events(tmp_path / "events.csv")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO}
    for command in (["experiments.train", "--dataset", "my_spec.json", "--model", "dcn_v2",
                     "--epochs", "5", "--batch_size", "32", "--verbose", "0"],
                    ["experiments.export", "--model_dir", "artifacts/models/dcn_v2-my-clicks"]):
        done = subprocess.run([sys.executable, "-m", *command], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads((tmp_path / "artifacts/models/dcn_v2-my-clicks/metrics.json").read_text())
    assert run["dataset"] == "my-clicks" and run["task_type"] == "binary"
    assert run["val"]["auc"] > 0.6 and np.isfinite(run["test"]["log_loss"])
    assert (tmp_path / "artifacts/serving/deepmix_click/1/saved_model.pb").exists()
