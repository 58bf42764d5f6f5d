"""AutoFIS's two stages around the trainer: read the gates a search trained
(`Config.autofis="search"`), keep the pairs whose gate GRDA left non-zero, and make the
config that retrains with only those (`autofis="on"`, their gates as starting weights).
"""

import os

import numpy as np

from deepmix_tf.layers import GatedInteraction

LAYER = "autofis"


def find_layer(model, name=LAYER):
    """The layer `name` anywhere in `model` (its sub-models included)."""
    for layer in model._flatten_layers(include_self=False):
        if layer.name == name and isinstance(layer, GatedInteraction):
            return layer
    raise ValueError(f"{model.name!r} has no {name!r} GatedInteraction layer: was it trained "
                     "with autofis='search' or 'on'?")


def searched_pairs(model):
    """[{"fields": [a, b], "gate": float, "kept": bool}] of a searched model's pairs."""
    layer = find_layer(model)
    names = layer.field_names or [str(i) for i in range(layer.num_fields)]
    gates = np.asarray(layer.gates.numpy(), np.float64)
    return [{"fields": [names[i], names[j]], "gate": float(g), "kept": bool(g != 0.0)}
            for (i, j), g in zip(layer.pairs, gates)]


def retrain_config(config, pairs):
    """The config that retrains with the kept pairs, their gates as starting values."""
    kept = [p for p in pairs if p["kept"]]
    if not kept:
        raise ValueError("GRDA zeroed every gate: no pair to retrain with (lower grda_c)")
    return config.replace(autofis="on", autofis_pairs=[p["fields"] for p in kept],
                          autofis_gates=[p["gate"] for p in kept])


def heat_map(pairs, path, title=""):
    """A field-by-field PNG of the gates (|gate|; blank: a gate GRDA set to exactly 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(n for p in pairs for n in p["fields"]))
    index = {n: i for i, n in enumerate(names)}
    grid = np.full((len(names), len(names)), np.nan)
    for p in pairs:
        i, j = index[p["fields"][0]], index[p["fields"][1]]
        grid[i, j] = grid[j, i] = abs(p["gate"]) if p["kept"] else np.nan
    size = max(4.0, 0.45 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(grid, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), names)
    kept = sum(p["kept"] for p in pairs)
    ax.set_title(title or f"AutoFIS gates: {kept} of {len(pairs)} pairs kept (blank: 0)")
    fig.colorbar(image, ax=ax, label="|gate|", shrink=0.8)
    fig.tight_layout()
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def write_search(model_dir, model, config):
    """Writes `interactions.json`, `interactions.png` and `retrain_config.json` beside a
    searched run; returns the pairs."""
    from deepmix_tf.files import write_json

    pairs = searched_pairs(model)
    write_json(os.path.join(model_dir, "interactions.json"),
               {"kept": sum(p["kept"] for p in pairs), "pairs": len(pairs),
                "grda": {"c": config.grda_c, "mu": config.grda_mu,
                         "learning_rate": config.grda_learning_rate or config.learning_rate},
                "interactions": pairs})
    heat_map(pairs, os.path.join(model_dir, "interactions.png"))
    kept = [p for p in pairs if p["kept"]]
    if kept:
        retrain_config(config, pairs).to_json(os.path.join(model_dir, "retrain_config.json"))
    return pairs

