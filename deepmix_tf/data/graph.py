"""Movie features read off the rating graph (who rated a movie, and how), without labels.

For the genre task the whole rating graph is an allowed input (rel-movielens1m protocol); for
the rating task only the training ratings may be used, or validation/test leak in.
"""

import numpy as np

AGES = (1, 18, 25, 35, 45, 50, 56)
NUM_OCCUPATIONS = 21


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


def movie_graph_features(ratings, users, movie_ids, svd_dim=32, seed=0):
    """Dense per-movie features from a set of ratings.

    Columns: log(1 + number of ratings); mean rating; the share of each rating value 1..5;
    the share of female raters; the share of raters in each ML-1M age group (7) and
    occupation (21); and an `svd_dim`-dimensional spectral embedding of the movie in the
    movie x user graph (edges weighted 1/sqrt(deg(movie) deg(user)), as in a normalised
    adjacency). Movies without ratings get zeros.

    Args:
        ratings: DataFrame with `user_id`, `movie_id`, `rating`.
        users: DataFrame with `user_id`, `gender`, `age`, `occupation`.
        movie_ids: int array, the movies to describe (one output row each, in this order).
        svd_dim: int, size of the spectral embedding.
        seed: int, seed of the randomized SVD.

    Returns:
        (features float32 (len(movie_ids), n), names list of n column names).
    """
    movie_ids = np.asarray(movie_ids, dtype=np.int64)
    index = np.unique(movie_ids)
    m = _rows(ratings["movie_id"].to_numpy(), index)
    keep = m >= 0
    m = m[keep]
    user_table = users.sort_values("user_id")
    u = _rows(ratings["user_id"].to_numpy()[keep], user_table["user_id"].to_numpy())
    if (u < 0).any():
        raise ValueError("ratings name users missing from the user table")
    r = ratings["rating"].to_numpy()[keep]
    n_movies, n_users = len(index), len(user_table)

    count = np.bincount(m, minlength=n_movies).astype(np.float64)
    safe = np.maximum(count, 1.0)
    columns = [np.log1p(count), np.bincount(m, weights=r, minlength=n_movies) / safe]
    names = ["log_count", "mean_rating"]
    for value in range(1, 6):
        columns.append(np.bincount(m, weights=r == value, minlength=n_movies) / safe)
        names.append(f"share_rating_{value}")
    female = (user_table["gender"].to_numpy() == "F")[u]
    columns.append(np.bincount(m, weights=female, minlength=n_movies) / safe)
    names.append("share_female")
    age = user_table["age"].to_numpy()[u]
    for a in AGES:
        columns.append(np.bincount(m, weights=age == a, minlength=n_movies) / safe)
        names.append(f"share_age_{a}")
    occupation = user_table["occupation"].to_numpy()[u]
    for o in range(NUM_OCCUPATIONS):
        columns.append(np.bincount(m, weights=occupation == o, minlength=n_movies) / safe)
        names.append(f"share_occupation_{o}")

    user_degree = np.maximum(np.bincount(u, minlength=n_users), 1)
    adjacency = np.zeros((n_movies, n_users), dtype=np.float32)
    adjacency[m, u] = 1.0 / np.sqrt(safe[m] * user_degree[u])
    spectral = randomized_svd(adjacency, svd_dim, seed)
    norms = np.linalg.norm(spectral, axis=1, keepdims=True)
    spectral = np.where(norms > 0, spectral / np.maximum(norms, 1e-12), 0.0)
    names += [f"svd_{i}" for i in range(svd_dim)]

    table = np.concatenate([np.stack(columns, axis=1), spectral], axis=1).astype(np.float32)
    return table[_rows(movie_ids, index)], names


def graph_prior(graph_values, graph_names, node, strength):
    """The spectral columns of a movie graph table, each movie's pulled towards its text's
    estimate as an empirical-Bayes prior: with `n` ratings,

        svd' = normalise(n / (n + strength) * svd + strength / (n + strength) * normalise(node))

    A movie without ratings takes the text's position, one with many keeps its own.

    Args:
        graph_values: float (movies, d) raw table of `data.graph.movie_graph_features`
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
