"""The scope gate's learned opinion: how likely a sentence is a request the model was trained for.

A cosine threshold to the training captions cannot tell a skill from its near miss: the sentence
encoder weighs the verb far above the direction, object or posture ("a person walks backwards" is 0.85
from "a person walks forward", as near as most paraphrases). Labelled *examples* can: requests known
to be in scope (captions, paraphrases) and known to be out of it (near misses, other motions). The
head turns a sentence into five similarities, to its nearest caption, to its `TOP` nearest in-scope
and out-of-scope examples and to the single nearest of each (`similarity_features`), and averages two
logistic regressions: one over those numbers (a smoothed nearest-neighbour vote; the single nearest
catches a near miss with few examples, such as a front flip among many back and side flips) and one
over them plus the embedding itself and what it adds to its nearest caption and to its nearest in-scope
sentence (`head_input`: a near miss is a skill plus a modifier, "backwards", "with a ball", "while
lying down", and the difference isolates the modifier). Chosen by 5-fold cross-validation on
test/data/demo_scope_phrases.yaml (`benchmarks/demo_scope.py`); a single MLP, either head alone or the
three similarities without the single nearest did worse there, the embedding alone or with one of the
two differences a little worse.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

#: Nearest examples averaged per side (one is too noisy a neighbour; 3 did a little worse in cross-validation).
TOP = 5
#: Scale of the similarity features (cosines span a few tenths) so that one learning rate fits all.
SCALE = 4.0


def _top_mean(cos: torch.Tensor, k: int = TOP) -> torch.Tensor:
    if cos.shape[-1] == 0:
        return torch.full(cos.shape[:-1], -1.0)
    return torch.topk(cos, min(k, cos.shape[-1]), dim=-1).values.mean(-1)


#: Similarity features per sentence (`similarity_features`).
FEATURES = 5
#: Vectors of D values per sentence in `head_input`.
INPUTS = 3


def head_input(unit: torch.Tensor, to_caption: torch.Tensor, to_inside: torch.Tensor) -> torch.Tensor:
    """(n, `INPUTS` D): (n, D) unit embeddings, then their differences from their nearest caption's and
    nearest in-scope sentence's (captions included) embedding."""
    return torch.cat([unit, unit - to_caption, unit - to_inside], dim=-1)


def similarity_features(to_captions: torch.Tensor, to_inside: torch.Tensor, to_outside: torch.Tensor) -> torch.Tensor:
    """(n, `FEATURES`): cosine to the nearest caption, mean cosine to the `TOP` nearest in-scope examples
    (captions included) and to the `TOP` nearest out-of-scope ones, then to the single nearest of each
    side; excluded pairs hold -2."""
    inside = torch.cat([to_captions, to_inside], dim=-1)
    return torch.stack([to_captions.max(-1).values, _top_mean(inside), _top_mean(to_outside),
                        _top_mean(inside, 1), _top_mean(to_outside, 1)], dim=-1)


class ScopeHead:
    """Two logistic regressions over a sentence's `similarity_features` (and `head_input`), averaged.

    ``score`` in [0, 1]; a sentence is in scope when it is at least ``cut``.
    """

    def __init__(self, similarity_weights: Any, embedding_weights: Any, cut: float) -> None:
        self.similarity_weights = torch.as_tensor(np.asarray(similarity_weights, np.float32))
        self.embedding_weights = torch.as_tensor(np.asarray(embedding_weights, np.float32))
        n = FEATURES + 1
        we = self.embedding_weights
        if self.similarity_weights.shape != (n,) or we.ndim != 1 or len(we) <= n or (len(we) - n) % INPUTS:
            raise ValueError(f"a scope head has {FEATURES} + 1 similarity weights and {INPUTS} D + {FEATURES} + 1 "
                             f"embedding weights, got {tuple(self.similarity_weights.shape)} and {tuple(we.shape)}")
        if not 0.0 < float(cut) < 1.0:
            raise ValueError(f"cut is a probability in (0, 1), got {cut}")
        self.cut = float(cut)

    @property
    def dim(self) -> int:
        return (len(self.embedding_weights) - FEATURES - 1) // INPUTS

    def scores(self, embeddings: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two heads' probabilities for (n, `INPUTS` D) `head_input` rows and their (n, `FEATURES`) features."""
        f = features * SCALE
        ws, we = self.similarity_weights, self.embedding_weights
        by_similarity = torch.sigmoid(f @ ws[:-1] + ws[-1])
        by_embedding = torch.sigmoid(torch.cat([embeddings, f], dim=-1) @ we[:-1] + we[-1])
        return by_similarity, by_embedding

    def score(self, embeddings: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        a, b = self.scores(embeddings, features)
        return (a + b) / 2

    @classmethod
    def fit(cls, embeddings: torch.Tensor, features: torch.Tensor, labels: Sequence[bool], cut: float, *,
            epochs: int = 1000, weight_decay: float = 1e-3, lr: float = 0.03, seed: int = 0) -> "ScopeHead":
        """Fit both heads on (n, `INPUTS` D) `head_input` rows, their leave-one-out features and in-scope
        labels (classes weighed equally); deterministic for a seed."""
        y = torch.as_tensor(np.asarray(labels, np.float32))
        if len(y) != len(embeddings) or len(y) != len(features) or not 0 < float(y.sum()) < len(y):
            raise ValueError(f"need in-scope and out-of-scope examples, one label each: {len(y)} labels, "
                             f"{len(embeddings)} embeddings")
        pos_weight = (y == 0).sum() / (y == 1).sum()
        gen = torch.Generator().manual_seed(seed)
        f = features.float() * SCALE
        weights = []
        for x in (f, torch.cat([embeddings.float(), f], dim=-1)):
            w = torch.nn.Parameter(torch.randn(x.shape[1] + 1, generator=gen) * 0.01)
            opt = torch.optim.AdamW([w], lr=lr, weight_decay=weight_decay)
            for _ in range(epochs):
                opt.zero_grad()
                logit = x @ w[:-1] + w[-1]
                torch.nn.functional.binary_cross_entropy_with_logits(logit, y, pos_weight=pos_weight).backward()
                opt.step()
            weights.append(w.detach().numpy())
        return cls(weights[0], weights[1], cut)

    def with_cut(self, cut: float) -> "ScopeHead":
        return ScopeHead(self.similarity_weights.numpy(), self.embedding_weights.numpy(), cut)

    def state(self) -> dict[str, Any]:
        return {"similarity_weights": self.similarity_weights.numpy().copy(),
                "embedding_weights": self.embedding_weights.numpy().copy(), "cut": self.cut}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "ScopeHead":
        return cls(state["similarity_weights"], state["embedding_weights"], state["cut"])
