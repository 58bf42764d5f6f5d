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


def held_out(dataset_dir, meta, split):
    """(users in order of first appearance, {user: set of relevant items}) of a split."""
    users, items, labels = rec.interactions(dataset_dir, meta, split)
    threshold = meta["items"]["relevant_at_least"]
    relevant = {}
    for user, item, label in zip(users.tolist(), items.tolist(), labels.tolist()):
        wanted = relevant.setdefault(user, set())
        if label >= threshold:
            wanted.add(item)
    return np.asarray(list(relevant), users.dtype), relevant


def popularity(dataset_dir, meta, split="test"):
    """METRICS of ranking items by their number of training examples (ties: catalogue
    order), without each user's training items."""
    from deepmix_tf.data import tfrecords

    catalogue = tfrecords.load_catalogue(dataset_dir, meta)[meta["items"]["key"]].to_numpy()
    train_users, train_items, _ = rec.interactions(dataset_dir, meta, "train")
    counts = dict(zip(*np.unique(train_items, return_counts=True)))
    order = catalogue[np.argsort([-counts.get(i, 0) for i in catalogue], kind="stable")]
    users, relevant = held_out(dataset_dir, meta, split)
    seen = _seen_sets(train_users, train_items)
    ranked = []
    for user in users.tolist():
        skip = seen.get(user, set())
        ranked.append([i for i in order[:DEPTH + len(skip)].tolist() if i not in skip][:DEPTH])
    return ranking_metrics(ranked, [relevant[u] for u in users.tolist()])


def evaluate_run(model_dir, split="test", batch_size=64, log=print):
    """METRICS of a trained run's recommendations (its `Recommender`)."""
    recommender, dataset_dir, meta = rec.load_run(model_dir)
    users, relevant = held_out(dataset_dir, meta, split)
    train_users, train_items, _ = rec.interactions(dataset_dir, meta, "train")
    features = _first_examples(dataset_dir, meta, users, split)
    ranked = []
    for start in range(0, len(users), batch_size):
        part = slice(start, start + batch_size)
        exclude = rec.seen_items(train_users, train_items, users[part])
        ids, _ = recommender.recommend({k: v[part] for k, v in features.items()}, DEPTH,
                                       exclude)
        ranked.extend(ids.tolist())
        if log and (start // batch_size) % 20 == 0:
            log(f"{model_dir}: {min(start + batch_size, len(users)):,}/{len(users):,} users")
    return ranking_metrics(ranked, [relevant[u] for u in users.tolist()])


def _seen_sets(users, items):
    seen = {}
    for user, item in zip(users.tolist(), items.tolist()):
        seen.setdefault(user, set()).add(item)
    return seen


def _first_examples(dataset_dir, meta, users, split):
    """Each user's raw features, from their first example of the split."""
    from deepmix_tf.data import tfrecords

    rows = tfrecords.read_examples(dataset_dir, split)
    column = rows[meta["items"]["user"]]
    _, first = np.unique(column, return_index=True)
    where = dict(zip(column[np.sort(first)].tolist(), np.sort(first).tolist()))
    index = np.asarray([where[u] for u in users.tolist()])
    return {name: value[index] for name, value in rows.items()}


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
