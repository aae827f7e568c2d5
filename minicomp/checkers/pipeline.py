"""Checker for lesson 10 ("Distill, then quantize"):

    pareto_front_indices(sizes, errors)
        the models no other model beats on both counts: none is at most as large *and* at most
        as wrong, and strictly better on one of the two. Returns their indices, smallest first
        (equal sizes: lower error first, then lower index).

The cases mix the order of the models, repeat sizes, repeat errors and repeat whole models (two
identical models do not beat each other: both stay), so that a greedy scan of unsorted input, a
scan sorted by size alone or keeping equal errors, a strict or a loose comparison, or the front of
the wrong corner each fail somewhere. The indices may come as a list, a tuple, or a 1-D numpy
array or tensor.
"""

from __future__ import annotations

import numpy as np
import torch

from minicomp.grading import Case, Mistake, compare_values, register


def _dominated(i: int, sizes, errors, strict_both: bool = False, loose: bool = False) -> bool:
    """Whether some other model beats model i (lower is better for both)."""
    for j in range(len(sizes)):
        if j == i:
            continue
        if strict_both:                       # (a mistake) better on both counts, strictly
            if sizes[j] < sizes[i] and errors[j] < errors[i]:
                return True
        elif loose:                           # (a mistake) no worse on both, equal counts too
            if sizes[j] <= sizes[i] and errors[j] <= errors[i]:
                return True
        elif sizes[j] <= sizes[i] and errors[j] <= errors[i] and (sizes[j] < sizes[i] or errors[j] < errors[i]):
            return True
    return False


def _order(front, sizes, errors):
    return sorted(front, key=lambda i: (sizes[i], errors[i], i))


def reference(sizes, errors):
    """Indices of the models on the Pareto front (lower size and lower error are better)."""
    return _order([i for i in range(len(sizes)) if not _dominated(i, sizes, errors)], sizes, errors)


def _greedy_scan(sizes, errors):
    """(a mistake) Walk the models in the order given, keeping one if it lowers the best error so
    far: right only for input already sorted by size."""
    front, best = [], float("inf")
    for i in range(len(sizes)):
        if errors[i] < best:
            front.append(i)
            best = errors[i]
    return front


def _sorted_scan(sizes, errors, *, by_size_only=False, keep_equal=True):
    """(a mistake) Sort the models, then keep one when its error is at most the best so far (a
    larger model as good as a smaller one stays, though the smaller one beats it); or sort by size
    alone and keep one when its error is below the best so far (of two models of the same size, the
    worse one may come first and stay)."""
    if by_size_only:
        order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    else:
        order = _order(range(len(sizes)), sizes, errors)
    front, best = [], float("inf")
    for i in order:
        if errors[i] < best or (keep_equal and errors[i] == best):
            front.append(i)
            best = errors[i]
    return front


def _compare(got, expected):
    """`compare_values`, also for a 1-D array or tensor of indices, saying so when the models are
    the right ones in the wrong order, and else which models are missing or listed wrongly."""
    if isinstance(got, (np.ndarray, torch.Tensor)) and got.ndim == 1:
        got = got.tolist()
    problem = compare_values(got, expected)
    if not problem or not isinstance(got, (list, tuple)):
        return problem
    try:
        same_models = compare_values(sorted(got), sorted(expected)) is None
    except TypeError:   # items that do not sort (None, strings mixed with numbers, ...)
        return problem
    if same_models:
        return (f"{problem}: these are the right models, in the wrong order; list them smallest "
                "model first (equal sizes: lower error first, then lower index)")
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in got):
        return problem
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    said = [f"model{'s' if len(missing) > 1 else ''} {_names(missing)} {'are' if len(missing) > 1 else 'is'} "
            "on the front but missing"] if missing else []
    said += [f"model{'s' if len(extra) > 1 else ''} {_names(extra)} {'are' if len(extra) > 1 else 'is'} "
             "beaten (or not a model) but listed"] if extra else []
    twice = sorted({i for i in got if got.count(i) > 1})
    said += [f"model{'s' if len(twice) > 1 else ''} {_names(twice)} {'are' if len(twice) > 1 else 'is'} "
             "listed more than once"] if twice else []
    return f"{problem}: {'; '.join(said)}" if said else problem


def _names(indices) -> str:
    return ", ".join(map(str, indices))


def _cases():
    return [
        Case("a hand example: sizes 1, 2, 3, 4 with errors 0.9, 0.5, 0.6, 0.2 (model 2 is beaten by model 1)",
             ([1.0, 2.0, 3.0, 4.0], [0.9, 0.5, 0.6, 0.2])),
        Case("the same models in another order",
             ([3.0, 1.0, 4.0, 2.0], [0.6, 0.9, 0.2, 0.5])),
        Case("two models of the same size: the worse one is beaten",
             ([2.0, 2.0, 5.0, 1.0], [0.4, 0.3, 0.1, 0.8])),
        Case("two identical models: neither beats the other, both stay",
             ([1.0, 3.0, 3.0, 6.0], [0.9, 0.4, 0.4, 0.2])),
        Case("a larger model with the same error as a smaller one is beaten",
             ([4.0, 1.0, 2.0, 6.0], [0.3, 0.6, 0.6, 0.3])),
        Case("one model beats every other", ([8.0, 1.0, 4.0], [0.5, 0.1, 0.3])),
        Case("a pure trade-off: every model is on the front", ([5.0, 1.0, 3.0, 2.0, 4.0], [0.1, 0.5, 0.3, 0.4, 0.2])),
        Case("one model", ([3.5], [0.25])),
        Case("ten models as lesson 10 measures them: bytes and perplexity",
             ([4.0e6, 1.0e6, 2.1e6, 5.3e5, 2.7e5, 1.3e5, 5.3e5, 2.7e5, 6.6e4, 1.4e5],
              [3.1, 3.2, 3.3, 3.25, 3.6, 4.9, 3.4, 3.3, 9.0, 3.9])),
    ]


register(
    "pareto_front_indices",
    params=("sizes", "errors"),
    reference=reference,
    cases=_cases,
    compare=_compare,
    mistakes=[
        Mistake("a True/False flag per model instead of the indices",
                lambda s, e: [i in set(reference(s, e)) for i in range(len(s))],
                "Return the indices of the models on the front (e.g. [1, 3]), smallest model first, not "
                "one True/False per model: [i for i, keep in enumerate(flags) if keep] turns flags into indices."),
        Mistake("a greedy scan of the models in the order given",
                _greedy_scan,
                "Keeping a model when it lowers the best error so far works only once the models "
                "are sorted by size: sort the indices by (size, error) first, then scan; or test each "
                "model against every other."),
        Mistake("beaten only when worse on both counts",
                lambda s, e: _order([i for i in range(len(s)) if not _dominated(i, s, e, strict_both=True)], s, e),
                "A model of the same size and a higher error is beaten too: model j beats model i when "
                "it is no worse on both counts (<=) and strictly better on at least one (<)."),
        Mistake("beaten by an equal model",
                lambda s, e: _order([i for i in range(len(s)) if not _dominated(i, s, e, loose=True)], s, e),
                "Two identical models do not beat each other, so both stay on the front: 'no worse on "
                "both' is not enough, j must also be strictly better on one count."),
        Mistake("the front of the wrong corner (higher error is better)",
                lambda s, e: reference(s, [-x for x in e]),
                "Lower is better for both counts: a smaller model with a *lower* error beats a larger "
                "one with a higher error."),
        Mistake("the right models in the order given",
                lambda s, e: sorted(reference(s, e)),
                "Return the indices smallest model first (for equal sizes, lower error first): "
                "sorted(front, key=lambda i: (sizes[i], errors[i], i))."),
        Mistake("a sorted scan that keeps equal errors",
                _sorted_scan,
                "A model as good as a smaller one is beaten by it: after sorting by (size, error), keep a "
                "model only when its error is *below* every error before it, or when it is an exact "
                "duplicate (same size and error) of the model just kept."),
        Mistake("a scan sorted by size alone",
                lambda s, e: _sorted_scan(s, e, by_size_only=True, keep_equal=False),
                "Of two models of the same size, the one with the lower error beats the other; sorted by "
                "size alone, the worse one may come first and be kept. Sort by (size, error), then scan."),
    ],
    hint="Model j beats model i when sizes[j] <= sizes[i] and errors[j] <= errors[i], and one of the two "
         "is strictly smaller. Keep the models nobody beats, smallest first.",
)
