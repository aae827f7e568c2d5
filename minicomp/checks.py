"""Input checks shared by the whole library.

Each `check_*` function raises a `TypeError` or a `ValueError` whose message names the argument,
says what was expected and, where there is one, the fix. Some also return the value in the form
the library uses (a plain `int` for a numpy integer, a `bool` for a numpy bool):

    >>> check_seed("1")
    Traceback (most recent call last):
    TypeError: seed must be an int such as 0 or 1234, got str '1'

Checks that belong to one topic live beside it: a quantized layer's input (`quant.check_input`),
group sizes (`quant.check_group_size`), devices (`hardware.check_device`), logits
(`distill._check_logits`). This module imports nothing else from minicomp, so every module can
import it.

Checks of one value take its name first, as their messages read (`check_flag("pack", pack)`),
except those whose name has a usual default, which take the value first (`check_bits(bits)`,
`check_bits(act_bits, "act_bits")`, `check_seed(seed)`, `check_module(model)`). Checks of two
tensors take both, then both names (`check_rows(x_val, y_val, "x_val", "y_val")`).

Two helpers that checks and models share live here too: `capturing()`, whether a value may be
read back to check it now, and `seeded(seed)`, a block run under a seed.

Two rules run through all of them:

- `True` is an int to Python, but never a size, a seed or a number of bits a learner meant.
- A flag must be `True` or `False`: a string such as `"no"` would otherwise read as True.
"""

from __future__ import annotations

import contextlib
import math
import numbers

import numpy as np
import torch


def is_int(value) -> bool:
    """An int (a numpy integer too) that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
    """A real number (an int, a float, a numpy float) that is not a bool. NaN and inf are real
    numbers here: range checks such as `0 < value < math.inf` refuse them."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_flag(name: str, value) -> bool:
    """`value` as a bool if it is True or False (a numpy bool too), else TypeError."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}={value!r} must be True or False")
    return bool(value)


def check_int(name: str, value) -> int:
    """`value` as a plain int (a numpy integer too), else TypeError. True is not an int here."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    return int(value)


def check_positive_ints(**values) -> None:
    """Raise unless each keyword's value is an int >= 1: sizes, counts, steps, epochs."""
    for name, value in values.items():
        if check_int(name, value) < 1:
            raise ValueError(f"{name}={value} must be >= 1")


def check_positive_numbers(**values) -> None:
    """Raise unless each keyword's value is a finite real number > 0, such as a learning rate."""
    for name, value in values.items():
        if not is_real(value) or not 0 < value < math.inf:
            raise ValueError(f"{name}={value!r} must be a finite number > 0")


_FRACTIONS = {"[0, 1]": (False, False), "[0, 1)": (False, True), "(0, 1)": (True, True)}  # open at 0, at 1


def check_fraction(name: str, value, interval: str = "[0, 1]", meaning: str = "") -> float:
    """`value` as a float if it is a real number in `interval`, one of "[0, 1]", "[0, 1)" and
    "(0, 1)", else ValueError; `meaning` ends the message (": the share of rows held out")."""
    if interval not in _FRACTIONS:
        raise ValueError(f"interval={interval!r} must be one of {', '.join(map(repr, _FRACTIONS))}")
    open_low, open_high = _FRACTIONS[interval]
    if not (is_real(value) and (0 < value if open_low else 0 <= value) and (value < 1 if open_high else value <= 1)):
        raise ValueError(f"{name}={value!r} must be a number in {interval}{meaning}")
    return float(value)


def check_bits(bits, name: str = "bits") -> int:
    """`bits` as an int if it is a whole number in 2..8, else ValueError naming `name`."""
    if not is_int(bits) or not 2 <= bits <= 8:
        raise ValueError(f"{name}={bits!r} must be an int from 2 to 8")
    return int(bits)


def check_seed(seed) -> int:
    """`seed` as a plain int (a numpy integer too, which torch.Generator refuses), else TypeError."""
    if not is_int(seed):
        raise TypeError(f"seed must be an int such as 0 or 1234, got {type(seed).__name__} {seed!r}")
    return int(seed)


def check_callable(name: str, fn) -> None:
    """Raise TypeError unless `fn` can be called (the timing helpers call it with no arguments)."""
    if not callable(fn):
        raise TypeError(f"{name} must be callable (a function taking no arguments), got "
                        f"{type(fn).__name__} {fn!r}")


def check_module(model, name: str = "model") -> None:
    """Raise TypeError unless `model` is a torch.nn.Module."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")


def check_tensor(name: str, value) -> None:
    """Raise TypeError unless `value` is a torch.Tensor (a list or numpy array gets the fix)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}; convert it with "
                        f"torch.as_tensor({name})")


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise TypeError if `x` is not a floating-point tensor, ValueError if it holds NaN or Inf
    (a tensor on the meta device has no values: only its type is checked)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        given = f"a {x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"{name} must be a floating-point torch.Tensor, got {given}")
    if x.is_meta:  # a shape and a dtype, no values to check
        return
    bad = ~torch.isfinite(x)
    if bad.any():
        raise ValueError(f"{name} contains NaN or Inf ({int(bad.sum())} of {x.numel()} values); "
                         "expected finite values")


def check_class_ids(y: torch.Tensor, num_classes: int) -> None:
    """y must hold class ids a model of `num_classes` outputs can predict, 0 .. num_classes − 1
    (else its accuracy is silently low). An empty y passes."""
    if y.numel() == 0:
        return
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"y holds class ids from {lo} to {hi}, but the model predicts {num_classes} classes, "
                         f"0 to {num_classes - 1}; is y the labels of this dataset, and of these rows of x? "
                         "(−1, 'unlabelled', is for training only: accuracy needs a label for every row)")


def check_rows(x, y, x_name: str = "x", y_name: str = "y") -> None:
    """Raise unless x and y are tensors with the same number of rows (examples and their labels),
    at least one."""
    check_tensor(x_name, x)
    check_tensor(y_name, y)
    if x.dim() == 0 or y.dim() == 0 or len(x) == 0:
        raise ValueError(f"{x_name} has shape {tuple(x.shape)} and {y_name} {tuple(y.shape)}; expected at least "
                         "one row of inputs, and one label per row")
    if len(x) != len(y):
        raise ValueError(f"{x_name} has {len(x)} rows but {y_name} has {len(y)}; they must match (one label per row)")


def check_same_device(a: torch.Tensor, b: torch.Tensor, a_name: str, b_name: str) -> None:
    """Raise ValueError unless tensors `a` and `b` are on one device, naming both and the fix."""
    if a.device != b.device:
        raise ValueError(f"{a_name} is on {a.device} but {b_name} is on {b.device}; move them to one device, "
                         f"e.g. {b_name}.to({a_name}.device)")


def capturing() -> bool:
    """True while a CUDA graph is being captured or torch.compile traces: no reading values back."""
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)()
    return compiling or (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())


@contextlib.contextmanager
def seeded(seed: int | None):
    """Run the block under torch.manual_seed(seed) without disturbing the global RNG (None: no seed)."""
    if seed is None:
        yield
        return
    seed = check_seed(seed)  # "1" or 1.5 would be turned into some other seed by torch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
