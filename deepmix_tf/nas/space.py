"""The search space of automated DeepMix design: a stack of blocks, each an operator over a
choice of earlier outputs (dense connectivity), with the embedding widths and the scoring
head's width (issue: "Automated DeepMix design").

An architecture is plain JSON:

    {"blocks": [{"op": "mlp", "inputs": [0], "width": 2.0},
                {"op": "cross", "inputs": [0, 1], "experts": 4, "rank": 16},
                {"op": "dot", "inputs": [1]},
                {"op": "identity", "inputs": [2, 3]}],
     "head": 128,
     "embedding_dims": {"user_id": 16, "movie_id": 4}}

Input 0 is the stacked features; input j >= 1 is block j's output. A block reads the mean of
its inputs. The network's output is the last block's, through the head.
"""

import dataclasses
import json

import numpy as np

OPERATORS = ("mlp", "cross", "dot", "identity")


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The choices of every block and of the head and embeddings.

    Args:
        blocks: int. Blocks in the stack.
        mlp_widths: a residual MLP block's hidden width, as multiples of the block width.
        experts: CrossNetMix's numbers of experts.
        ranks: CrossNetMix's low ranks.
        head_widths: the scoring head's widths.
        embedding_widths: each field's embedding widths.
        fields: the embedded fields (names) whose width is searched.
    """

    blocks: int = 4
    mlp_widths: tuple = (0.5, 1.0, 2.0)
    experts: tuple = (1, 2, 4)
    ranks: tuple = (8, 16, 32)
    head_widths: tuple = (64, 128, 256)
    embedding_widths: tuple = (4, 8, 16)
    fields: tuple = ()

    def __post_init__(self):
        for name in ("mlp_widths", "experts", "ranks", "head_widths", "embedding_widths"):
            values = tuple(getattr(self, name))
            if not values or sorted(set(values)) != list(values) or min(values) <= 0:
                raise ValueError(f"{name} must be increasing positive values, got {values}")
            object.__setattr__(self, name, values)
        object.__setattr__(self, "fields", tuple(self.fields))
        if self.blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {self.blocks}")

    def sample(self, rng):
        """A random architecture (`rng`: a numpy Generator): each block's operator
        (uniform), its inputs (a uniform number of the earlier outputs, then a uniform
        subset of that size), the operator's own choices, the head's width and each
        field's embedding width (uniform)."""
        blocks = [self._block(b, rng.choice(OPERATORS), rng) for b in range(self.blocks)]
        return {"blocks": blocks, "head": _item(rng.choice(self.head_widths)),
                "embedding_dims": {f: _item(rng.choice(self.embedding_widths))
                                   for f in self.fields}}

    def mutate(self, architecture, rng):
        """A copy with one choice changed to another value: a block's operator (its own
        choices drawn anew), one of its inputs toggled (never leaving none), one of its
        operator's choices, the head's width, or a field's width."""
        child = json.loads(json.dumps(architecture))
        # Only choices with another value to take: block 1 can only read x0, a space may
        # fix the head's width, and so on.
        tunable = {"mlp": ["width"] if len(self.mlp_widths) > 1 else [],
                   "cross": [k for k, v in (("experts", self.experts), ("rank", self.ranks))
                             if len(v) > 1]}
        kinds = ["op"] + (["inputs"] if self.blocks > 1 else [])
        kinds += ["head"] if len(self.head_widths) > 1 else []
        kinds += ["embedding"] if self.fields and len(self.embedding_widths) > 1 else []
        kinds += ["choice"] if any(tunable.get(b["op"]) for b in child["blocks"]) else []
        kind = rng.choice(kinds)
        if kind == "op":
            b = int(rng.integers(self.blocks))
            op = rng.choice([o for o in OPERATORS if o != child["blocks"][b]["op"]])
            child["blocks"][b] = {**self._block(b, op, rng),
                                  "inputs": child["blocks"][b]["inputs"]}
        elif kind == "inputs":
            b = int(rng.integers(1, self.blocks))
            inputs = set(child["blocks"][b]["inputs"])
            togglable = [j for j in range(b + 1) if j not in inputs or len(inputs) > 1]
            inputs ^= {int(rng.choice(togglable))}
            child["blocks"][b]["inputs"] = sorted(inputs)
        elif kind == "head":
            child["head"] = _other(self.head_widths, child["head"], rng)
        elif kind == "embedding":
            f = rng.choice(self.fields)
            child["embedding_dims"][f] = _other(self.embedding_widths,
                                                child["embedding_dims"][f], rng)
        else:
            b = int(rng.choice([i for i, blk in enumerate(child["blocks"])
                                if tunable.get(blk["op"])]))
            block = child["blocks"][b]
            key = str(rng.choice(tunable[block["op"]]))
            values = {"width": self.mlp_widths, "experts": self.experts, "rank": self.ranks}[key]
            block[key] = _other(values, block[key], rng)
        self.check(child)
        return child

    def check(self, architecture):
        """Raises ValueError, naming the choice, where `architecture` is not in the space."""
        blocks = architecture.get("blocks", [])
        if len(blocks) != self.blocks:
            raise ValueError(f"the architecture has {len(blocks)} blocks; the space "
                             f"{self.blocks}")
        for b, block in enumerate(blocks):
            where = f"block {b + 1}"
            if block.get("op") not in OPERATORS:
                raise ValueError(f"{where}: op must be one of {OPERATORS}, got "
                                 f"{block.get('op')!r}")
            inputs = block.get("inputs") or []
            if not inputs or any(not 0 <= j <= b for j in inputs) or \
                    sorted(set(inputs)) != list(inputs):
                raise ValueError(f"{where}: inputs must be distinct, increasing outputs "
                                 f"0..{b} (0: the stacked features), got {inputs}")
            wanted = {"mlp": {"width": self.mlp_widths},
                      "cross": {"experts": self.experts, "rank": self.ranks}}.get(
                block["op"], {})
            extra = set(block) - {"op", "inputs"} - set(wanted)
            if extra:
                raise ValueError(f"{where}: {block['op']} takes no {sorted(extra)}")
            for key, values in wanted.items():
                if block.get(key) not in values:
                    raise ValueError(f"{where}: {key} must be one of {values}, got "
                                     f"{block.get(key)!r}")
        if architecture.get("head") not in self.head_widths:
            raise ValueError(f"head must be one of {self.head_widths}, got "
                             f"{architecture.get('head')!r}")
        dims = architecture.get("embedding_dims") or {}
        if set(dims) != set(self.fields) or any(w not in self.embedding_widths
                                                for w in dims.values()):
            raise ValueError(f"embedding_dims must give each of {list(self.fields)} one of "
                             f"{self.embedding_widths}, got {dims}")

    def _block(self, b, op, rng):
        count = int(rng.integers(1, b + 2))
        inputs = sorted(int(j) for j in rng.choice(b + 1, size=count, replace=False))
        block = {"op": str(op), "inputs": inputs}
        if op == "mlp":
            block["width"] = _item(rng.choice(self.mlp_widths))
        elif op == "cross":
            block["experts"] = _item(rng.choice(self.experts))
            block["rank"] = _item(rng.choice(self.ranks))
        return block


def _item(value):
    return value.item() if isinstance(value, np.generic) else value


def _other(values, current, rng):
    return _item(rng.choice([v for v in values if v != current]))
