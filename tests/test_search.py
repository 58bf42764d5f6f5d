"""The architecture search over a supernet: the front, the rank statistic, regularised
evolution (on a known score, then over a trained supernet) and the command."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from deepmix_tf.nas import SearchSpace
from deepmix_tf.nas.search import (chosen, evolve, front, kendall_tau, pareto_front)


def test_pareto_front_keeps_exactly_the_undominated_points():
    points = [(0.70, 1.0), (0.68, 2.0), (0.69, 1.5), (0.71, 0.9), (0.68, 2.5), (0.72, 1.2),
              (0.69, 1.0)]
    # (0.70, 1.0) and (0.69, 1.5) lose to (0.69, 1.0); (0.68, 2.5) to (0.68, 2.0);
    # (0.72, 1.2) to several.
    assert pareto_front(points) == [3, 6, 1]
    assert pareto_front([(1, 1), (1, 1)]) == [0, 1]  # ties dominate neither


def test_kendall_tau_against_hand_counts():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # 6 pairs: 5 concordant, 1 discordant.
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx((5 - 1) / 6)
    # A tie in y: tau-b = (C - D) / sqrt(6 * 5); here C = 5, D = 0.
    assert kendall_tau([1, 2, 3, 4], [1, 2, 2, 4]) == pytest.approx(5 / np.sqrt(30))
    with pytest.raises(ValueError, match="length"):
        kendall_tau([1], [1])


class _KnownScore:
    """A stand-in for `SupernetRun` whose score is a known function of the architecture:
    best with every block a CrossNetMix of 4 experts, the head at 64 and field "a" at 16;
    latency grows with the head."""

    metric = "mae"
    finetune_steps = 0
    model_dir = "known"
    metrics = {"weights_sha256": "none"}

    def __init__(self):
        self.space = SearchSpace(blocks=3, fields=("a", "b"))
        self.scored = 0

    def score(self, architecture, splits=("held",)):
        self.scored += 1
        miss = sum(b["op"] != "cross" or b["experts"] != 4 for b in architecture["blocks"])
        miss += (architecture["head"] != 64) + (architecture["embedding_dims"]["a"] != 16)
        return {s: 0.6 + 0.02 * miss for s in splits}

    def latency_ms(self, architecture):
        return 0.1 + architecture["head"] / 1000


def test_evolution_finds_the_best_architecture_of_a_known_score(tmp_path):
    run = _KnownScore()
    state = evolve(run, str(tmp_path), population=10, tournament=3, budget_s=600,
                   max_children=300, seed=0, log=lambda _: None, progress=False)
    children = state["children"]
    assert len(children) == 300 and run.scored == 300
    first = min(c["score"] for c in children[:10])
    best = chosen(children, 1)[0]
    # Random draws of the first population are far from it; evolution gets there.
    assert first >= 0.64 and best["score"] == pytest.approx(0.6), (first, best)
    assert all(b["op"] == "cross" and b["experts"] == 4 for b in best["architecture"]["blocks"])
    # Every child after the first population is one mutation of a live member.
    for child in children[10:]:
        parent = children[child["parent"]]
        assert child["id"] - 10 <= parent["id"] < child["id"]
        assert child["architecture"] != parent["architecture"]
    # The front: undominated in (score, latency); the best score at the smallest head.
    edge = front(children)
    assert edge[0]["architecture"]["head"] == 64 and edge[0]["score"] == pytest.approx(0.6)


def test_evolution_resumes_its_state_and_refuses_other_settings(tmp_path):
    run = _KnownScore()
    whole = evolve(run, str(tmp_path / "a"), population=4, tournament=2, budget_s=600,
                   max_children=12, seed=3, log=lambda _: None, progress=False)
    evolve(run, str(tmp_path / "b"), population=4, tournament=2, budget_s=600,
           max_children=7, seed=3, log=lambda _: None, progress=False)
    run.scored = 0
    resumed = evolve(run, str(tmp_path / "b"), population=4, tournament=2, budget_s=600,
                     max_children=12, seed=3, log=lambda _: None, progress=False)
    assert run.scored == 5  # only the children not yet made
    assert [c["architecture"] for c in resumed["children"]] == \
        [c["architecture"] for c in whole["children"]]
    with pytest.raises(ValueError, match="other settings.*tournament"):
        evolve(run, str(tmp_path / "b"), population=4, tournament=3, budget_s=600,
               max_children=12, seed=3, log=lambda _: None, progress=False)


@pytest.fixture
def supernet_run(small_data, tmp_path):
    from deepmix_tf.training import trainer

    config = trainer.default_config(
        "movielens1m-rating", "nas", embedding_dim=16, batch_size=64, epochs=1,
        nas_space={"blocks": 2, "head_widths": [8, 16], "ranks": [4, 8]})
    metrics = trainer.train(config, data_dir=small_data["root"],
                            tfrecord_dir=str(tmp_path / "tf"), model_dir=str(tmp_path / "s"),
                            log=lambda _: None, verbose=0)
    # One architecture a step, over the training split less its held-out slice.
    from deepmix_tf.data import tfrecords

    build = str(tmp_path / "tf" / "movielens1m-rating")
    rest = len(tfrecords.read_examples(build, "train", part="rest")["rating"])
    held = len(tfrecords.read_examples(build, "train", part="held")["rating"])
    assert held > 0 and rest + held == metrics_rows(build)
    assert metrics["supernet"]["architectures_sampled"] == -(-rest // 64)
    return str(tmp_path / "s")


def metrics_rows(build):
    from deepmix_tf.data import tfrecords

    return tfrecords.read_metadata(build)["splits"]["train"]["examples"]


@pytest.mark.slow
def test_children_are_scored_with_the_supernets_weights_and_timed(supernet_run, tmp_path):
    from deepmix_tf.nas.search import SupernetRun
    from deepmix_tf.training.trainer import weights_digest

    run = SupernetRun(supernet_run, finetune_steps=3)
    before = weights_digest(run.network)
    architecture = run.space.sample(np.random.default_rng(0))
    first = run.score(architecture, splits=("held", "validation"))
    assert set(first) == {"held", "validation"} and all(np.isfinite(list(first.values())))
    # Scoring fine-tunes a copy in place and puts everything back: the same score again.
    assert weights_digest(run.network) == before
    again = run.score(architecture, splits=("held", "validation"))
    assert again == pytest.approx(first, rel=1e-5)
    # Without the fine-tune the score is the supernet's own, which the fine-tune moves.
    plain = SupernetRun(supernet_run, finetune_steps=0).score(architecture)["held"]
    assert plain != pytest.approx(first["held"], rel=1e-6)
    assert 0 < run.latency_ms(architecture) < 1000
    state = evolve(run, str(tmp_path / "e"), population=2, tournament=2, budget_s=600,
                   max_children=4, log=lambda _: None, progress=False)
    assert [c["parent"] is None for c in state["children"]] == [True, True, False, False]
    assert weights_digest(run.network) == before


@pytest.mark.slow
def test_the_search_command_writes_the_front_configs_and_rank_check(small_data, tmp_path):
    out = tmp_path / "search"
    common = [sys.executable, "-m", "experiments.search_architecture",
              "--data_dir", small_data["root"], "--tfrecord_dir", str(tmp_path / "tf"),
              "--model_dir", str(out), "--batch_size", "64", "--verbose", "0"]
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"embedding_dim": 16, "nas_space": {
        "blocks": 2, "head_widths": [8, 16], "ranks": [4, 8]}, "epochs": 1}))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    args = common + ["--config", str(space), "--supernet_epochs", "1", "--population", "2",
                     "--tournament", "2", "--max_children", "3", "--finetune_steps", "2",
                     "--rank_check", "2", "--top", "2"]
    done = subprocess.run(args, capture_output=True, text=True, env=env,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "front.json").read_text())
    assert result["children"] == 3 and result["front"]
    assert len(result["chosen"]) == 2 and os.path.exists(out / "front.png")
    rank = json.loads((out / "rank_check.json").read_text())
    assert len(rank["architectures"]) == 2 and -1 <= rank["kendall_tau_validation"] <= 1
    # A chosen config is a plain config: it trains through experiments.train, and the
    # trained run goes into the plot beside the search.
    trained = tmp_path / "arch-1"
    done = subprocess.run([sys.executable, "-m", "experiments.train", "--config",
                           result["chosen"][0]["config"], "--data_dir", small_data["root"],
                           "--tfrecord_dir", str(tmp_path / "tf"), "--model_dir",
                           str(trained), "--verbose", "0"], capture_output=True, text=True,
                          env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 0, done.stderr[-3000:]
    model = keras.saving.load_model(trained / "model.keras")
    assert model.get_layer("nas").get_layer("nas_head").units == \
        result["chosen"][0]["architecture"]["head"]
    supernet_written = os.path.getmtime(out / "supernet" / "metrics.json")
    done = subprocess.run(args + ["--trained", f"searched={trained}"], capture_output=True,
                          text=True, env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming" in done.stdout + done.stderr
    # The finished supernet is kept, not trained again.
    assert os.path.getmtime(out / "supernet" / "metrics.json") == supernet_written
    result = json.loads((out / "front.json").read_text())
    assert result["children"] == 3  # resumed: nothing more to do
    (mark,) = result["trained"]
    assert mark["searched"] and mark["latency_ms"] > 0 and np.isfinite(mark["metric"])
