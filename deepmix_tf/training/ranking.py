"""Ranking evaluation of recommendations: for each held-out user, every catalogue item the
user has no training example of is ranked; the relevant items are the user's held-out
examples whose label is at least the spec's `recommend.relevant_at_least` (ratings 4 and 5).

Metrics, averaged over users with at least one relevant item:
- HR@10: 1 when a relevant item is in the top 10.
- NDCG@10: sum of 1 / log2(rank + 1) over relevant items in the top 10, divided by its best
  possible value, sum over the first min(relevant, 10) ranks.
- Recall@20: relevant items in the top 20, divided by the number of relevant items.
"""

import numpy as np

from deepmix_tf.export import recommend as rec

METRICS = ("hr@10", "ndcg@10", "recall@20")
DEPTH = 20  # the deepest cut-off of METRICS
# Marks around the ranking section of results/README.md (experiments.evaluate_ranking writes
# it; experiments.report keeps it).
SECTION = ("<!-- ranking: experiments.evaluate_ranking -->", "<!-- /ranking -->")


def ranking_metrics(ranked, relevant):
    """METRICS of ranked lists against relevant sets.

    Args:
        ranked: (users, >= 20) item ids, best first.
        relevant: list of sets of item ids, one per row of `ranked`; rows with an empty
            set are left out.

    Returns:
        {metric: mean over users, "users": how many were scored}.
    """
    discounts = 1.0 / np.log2(np.arange(2, DEPTH + 2))
    hr, ndcg, recall = [], [], []
    for row, wanted in zip(ranked, relevant):
        if not wanted:
            continue
        hits = np.array([item in wanted for item in row[:DEPTH]], np.float64)
        hr.append(hits[:10].max())
        ideal = discounts[:min(len(wanted), 10)].sum()
        ndcg.append((hits[:10] * discounts[:10]).sum() / ideal)
        recall.append(hits[:20].sum() / len(wanted))
    if not hr:
        raise ValueError("no user has a relevant held-out item")
    return {"hr@10": float(np.mean(hr)), "ndcg@10": float(np.mean(ndcg)),
            "recall@20": float(np.mean(recall)), "users": len(hr)}


class HeldOut:
    """What ranking evaluation reads from a build, read once: the held-out users (in order
    of first appearance), their relevant items and raw features (from their first example),
    and the training split's (user, item) pairs."""

    def __init__(self, dataset_dir, meta, split="test"):
        from deepmix_tf.data import tfrecords

        self.dataset_dir, self.meta, self.split = dataset_dir, meta, split
        rows = tfrecords.read_examples(dataset_dir, split)
        column = rows[meta["items"]["user"]]
        items, labels = rows[meta["items"]["key"]], rows[meta["label"]["name"]]
        threshold = meta["items"]["relevant_at_least"]
        relevant = {}
        for user, item, label in zip(column.tolist(), items.tolist(), labels.tolist()):
            wanted = relevant.setdefault(user, set())
            if label >= threshold:
                wanted.add(item)
        self.users = np.asarray(list(relevant), column.dtype)
        self.relevant = [relevant[u] for u in self.users.tolist()]
        _, first = np.unique(column, return_index=True)
        where = dict(zip(column[first].tolist(), first.tolist()))
        index = np.asarray([where[u] for u in self.users.tolist()])
        self.features = {name: value[index] for name, value in rows.items()}
        self.train_users, self.train_items, _ = rec.interactions(dataset_dir, meta, "train")


def popularity(held):
    """METRICS of ranking items by their number of training examples (ties: catalogue
    order), without each user's training items."""
    from deepmix_tf.data import tfrecords

    meta = held.meta
    key = meta["items"]["key"]
    catalogue = tfrecords.load_catalogue(held.dataset_dir, meta)[key].to_numpy()
    counts = dict(zip(*np.unique(held.train_items, return_counts=True)))
    order = catalogue[np.argsort([-counts.get(i, 0) for i in catalogue], kind="stable")]
    seen = _seen_sets(held.train_users, held.train_items)
    ranked = []
    for user in held.users.tolist():
        skip = seen.get(user, set())
        ranked.append([i for i in order[:DEPTH + len(skip)].tolist() if i not in skip][:DEPTH])
    return ranking_metrics(ranked, held.relevant)


def evaluate_run(model_dir, held=None, split="test", batch_size=64, log=print):
    """METRICS of a trained run's recommendations (its `Recommender`); `held`: a `HeldOut`
    of the run's build (None: read here)."""
    recommender, dataset_dir, meta = rec.load_run(model_dir)
    held = held or HeldOut(dataset_dir, meta, split)
    # Every user's training items at once: one sort of the training split, not one a batch.
    exclude = rec.seen_items(held.train_users, held.train_items, held.users)
    pad = b"" if exclude.dtype == object else -1  # seen_items' padding
    ranked = []
    for start in range(0, len(held.users), batch_size):
        part = slice(start, start + batch_size)
        width = max(1, int((exclude[part] != pad).sum(axis=1).max()))
        ids, _ = recommender.recommend({k: v[part] for k, v in held.features.items()}, DEPTH,
                                       exclude[part, :width])
        ranked.extend(ids.tolist())
        if log and (start // batch_size) % 20 == 0:
            log(f"{model_dir}: {min(start + batch_size, len(held.users)):,}/"
                f"{len(held.users):,} users")
    return ranking_metrics(ranked, held.relevant)


def _seen_sets(users, items):
    seen = {}
    for user, item in zip(users.tolist(), items.tolist()):
        seen.setdefault(user, set()).add(item)
    return seen


def markdown(out):
    """The ranking table of `experiments.evaluate_ranking`'s JSON, as markdown."""
    lines = [f"### ranking ({out['dataset']}, {out['split']} users)", "",
             f"Every item a user has no training example of is ranked; relevant: the user's "
             f"{out['split']} ratings of at least {out['relevant_at_least']}. One run each "
             f"(`{out['command']}`).", "",
             "| model | users | HR@10 | NDCG@10 | Recall@20 |", "| --- | --- | --- | --- | --- |"]
    for row in out["rows"]:
        lines.append(f"| {row['model']} | {row['users']:,} | {row['hr@10']:.4f} | "
                     f"{row['ndcg@10']:.4f} | {row['recall@20']:.4f} |")
    return "\n".join(lines) + "\n"
