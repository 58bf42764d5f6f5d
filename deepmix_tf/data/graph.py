"""Item features read off an interaction graph (who rated a movie, and how), without labels:
the "interaction_graph" dense tables of dataset specs.

Where the interactions are the examples (the rating task) only the training split may be
used, or validation and test leak in; a spec says so with `"splits": "train"`.
"""

import numpy as np



def _rows(ids, index_ids):
    """Row index of each id in `index_ids` (sorted unique), -1 where absent."""
    pos = np.searchsorted(index_ids, ids)
    pos = np.clip(pos, 0, len(index_ids) - 1)
    return np.where(index_ids[pos] == ids, pos, -1)


def randomized_svd(matrix, rank, seed, power_iterations=4, oversample=10):
    """Top-`rank` left singular vectors times singular values of a dense matrix (Halko et al.).

    A matrix of lower rank than asked gives zero columns for the missing components."""
    full = rank
    rank = min(rank, *matrix.shape)
    rng = np.random.default_rng(seed)
    probe = rng.standard_normal((matrix.shape[1], rank + oversample)).astype(matrix.dtype)
    q, _ = np.linalg.qr(matrix @ probe)
    for _ in range(power_iterations):
        q, _ = np.linalg.qr(matrix.T @ q)
        q, _ = np.linalg.qr(matrix @ q)
    u_small, s, _ = np.linalg.svd(q.T @ matrix, full_matrices=False)
    u = q @ u_small[:, :rank]
    # Fix each vector's sign so the result does not depend on the LAPACK build.
    signs = np.sign(u[np.argmax(np.abs(u), axis=0), np.arange(rank)])
    u = (u * signs * s[:rank]).astype(np.float32)
    return np.pad(u, ((0, 0), (0, full - rank)))


def interaction_graph_features(interactions, item_ids, item, user, value=None, values=(),
                               users=None, user_shares=None, svd_dim=32, seed=0):
    """Dense per-item features of an interaction log (who interacted with an item, and how).

    Columns: `log_count` (log(1 + interactions)); with a `value` column (a rating), its mean
    (`mean_<value>`) and the share of each of `values` (`share_<value>_<v>`); for each
    column of `user_shares` ({column: [values]}), the share of the item's users with each
    value (`share_<column>_<v>`, read from the `users` table); and an `svd_dim`-dimensional
    spectral embedding of the item in the item x user graph (edges weighted
    1/sqrt(deg(item) deg(user)), as in a normalised adjacency), rows of unit length
    (`svd_<i>`). Items without interactions get zeros.

    Args:
        interactions: DataFrame with the `item` and `user` columns (and `value`).
        item_ids: int array, the items to describe (one output row each, in this order).
        users: DataFrame with `user` and the `user_shares` columns, or None.
        seed: int, seed of the randomized SVD.

    Returns:
        (features float32 (len(item_ids), n), names list of n column names).
    """
    item_ids = np.asarray(item_ids, dtype=np.int64)
    index = np.unique(item_ids)
    m = _rows(interactions[item].to_numpy(np.int64), index)
    keep = m >= 0
    m = m[keep]
    user_values = interactions[user].to_numpy()[keep]
    user_index, u = np.unique(user_values, return_inverse=True)
    n_items, n_users = len(index), len(user_index)

    count = np.bincount(m, minlength=n_items).astype(np.float64)
    safe = np.maximum(count, 1.0)
    columns, names = [np.log1p(count)], ["log_count"]
    if value is not None:
        r = interactions[value].to_numpy()[keep]
        columns.append(np.bincount(m, weights=r, minlength=n_items) / safe)
        names.append(f"mean_{value}")
        for v in values:
            columns.append(np.bincount(m, weights=r == v, minlength=n_items) / safe)
            names.append(f"share_{value}_{v}")
    if user_shares:
        table = users.set_index(user)
        missing = ~np.isin(user_index, table.index.to_numpy())
        if missing.any():
            raise ValueError(f"interactions name users missing from the user table, e.g. "
                             f"{user_index[missing][0]!r}")
        table = table.loc[user_index]
        for column, shares in user_shares.items():
            attribute = table[column].to_numpy()[u]
            for v in shares:
                columns.append(np.bincount(m, weights=attribute == v, minlength=n_items) / safe)
                names.append(f"share_{column}_{v}")

    user_degree = np.maximum(np.bincount(u, minlength=n_users), 1)
    adjacency = np.zeros((n_items, n_users), dtype=np.float32)
    adjacency[m, u] = 1.0 / np.sqrt(safe[m] * user_degree[u])
    spectral = randomized_svd(adjacency, svd_dim, seed)
    norms = np.linalg.norm(spectral, axis=1, keepdims=True)
    spectral = np.where(norms > 0, spectral / np.maximum(norms, 1e-12), 0.0)
    names += [f"svd_{i}" for i in range(svd_dim)]

    table = np.concatenate([np.stack(columns, axis=1), spectral], axis=1).astype(np.float32)
    return table[_rows(item_ids, index)], names


def graph_prior(graph_values, graph_names, node, strength):
    """The spectral columns of a movie graph table, each movie's pulled towards its text's
    estimate as an empirical-Bayes prior: with `n` ratings,

        svd' = normalise(n / (n + strength) * svd + strength / (n + strength) * normalise(node))

    A movie without ratings takes the text's position, one with many keeps its own.

    Args:
        graph_values: float (movies, d) raw table of `data.graph.interaction_graph_features`
            (`log_count` and `svd_*` columns among them).
        graph_names: the table's d column names.
        node: float (movies, k) node embeddings of the "graph_prior" objective
            (`text.node_embeddings`), same rows.
        strength: float > 0, the number of ratings at which graph and text weigh the same.

    Returns:
        A float32 copy of `graph_values` with the new spectral columns.
    """
    names = list(graph_names)
    columns = [i for i, name in enumerate(names) if str(name).startswith("svd_")]
    if "log_count" not in names or not columns:
        raise ValueError("the movie graph table has no log_count or svd_* columns; a graph "
                         "prior needs both")
    if node.shape != (graph_values.shape[0], len(columns)):
        raise ValueError(f"node embeddings of shape {node.shape} cannot be a prior for the "
                         f"{len(columns)} spectral columns of {graph_values.shape[0]} movies: "
                         "make them with `experiments.encode_nodes --objective=graph_prior` "
                         "from the same TFRecord build")
    if not strength > 0:
        raise ValueError(f"graph prior strength must be > 0, got {strength!r}")

    def unit(x):
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return np.where(norms > 0, x / np.maximum(norms, 1e-12), 0.0)

    count = np.expm1(np.asarray(graph_values, np.float64)[:, names.index("log_count")])
    weight = (count / (count + strength))[:, None]
    out = np.array(graph_values, np.float32)
    out[:, columns] = unit(weight * graph_values[:, columns] + (1 - weight) * unit(node))
    return out
