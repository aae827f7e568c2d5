"""Calibration and the model-level driver, `quantize_model` (lessons 06, 10 and 11).

    quantize_model(model, method="rtn", bits=4, group_size=128, calibration=batches)

1. `find_linears` picks the nn.Linear layers to quantize, in the order the model registers them
   (which, for the models of this course, is the order data flows through them). `include` and
   `skip` filter by name; a Linear whose weight is tied to another module (a GPT's lm_head shares
   the token embedding) is skipped unless `include` names it.
2. For static W8A8, `observe_inputs` runs the calibration batches once with an observer on every
   selected layer's input and fixes each layer's activation range.
3. Layer by layer, in order: if the method needs data, `capture_inputs` runs the calibration batches
   through the model *as quantized so far* and records this layer's inputs (a forward pre-hook that
   stops the forward pass as soon as it has them; inside a transformer's repeated blocks only the
   layer's own block runs, on its cached inputs: `minicomp.blockwise`); the method turns the layer into a
   `QuantizedWeight`; a `QuantLinear` replaces the layer in place. Later layers therefore see the
   errors of earlier ones and can compensate (GPTQ does; the sequential order is what makes it work).
   Layers that receive the very same input tensor (q, k, v) share one capture; a `joint` method
   quantizes them together in one call (AWQ searches one scale for them, GPTQ builds one Hessian).
4. A method's `finish` step, if it has one, runs last (AWQ folds its scales into the ops before).

Methods live in a registry. A module adds one with `@register_method("name", needs_calibration=...)`;
`quantize_model(method="gptq")` imports `minicomp.gptq` on first use, which registers it.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from minicomp.blockwise import Blockwise
from minicomp.checks import check_bits, check_flag, check_module
from minicomp.observers import Observer, check_observer, make_observer
from minicomp.quant import check_group_size
from minicomp.rtn import QuantLinear, rtn_quantize

# ── the method registry ─────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Method:
    """A weight quantizer for one layer (or, with `joint`, for the layers that share one input).

    fn(layer, inputs, *, bits, group_size, symmetric, **options) -> QuantizedWeight | nn.Module
      layer   the nn.Linear to quantize (weight [out, in]); do not modify it
      inputs  None if `needs_calibration` is False, else a list with one [tokens, in] tensor per
              calibration batch: what this layer receives in the model quantized up to it
      returns a QuantizedWeight (wrapped in a QuantLinear with the layer's bias) or a ready module
    joint   fn(layers, inputs, ...) gets the list of consecutive layers that receive the very same
            input tensor (q, k, v) and returns a list with one QuantizedWeight or module per layer
    finish  finish(model, batches, forward, *, pack, progress, **options), called once after the
            last layer (AWQ folds its scales there)
    weight_only  True if the method cannot also quantize activations (act_bits must stay None)
    """

    name: str
    fn: Callable
    needs_calibration: bool
    description: str = ""
    joint: bool = False
    finish: Callable | None = None
    weight_only: bool = False


METHODS: dict[str, Method] = {}


def register_method(name: str, *, needs_calibration: bool, description: str = "", joint: bool = False,
                    finish: Callable | None = None, weight_only: bool = False):
    """Decorator: make `fn` available as quantize_model(method=name)."""
    def decorate(fn: Callable) -> Callable:
        METHODS[name] = Method(name, fn, needs_calibration, description or (fn.__doc__ or "").strip(),
                               joint, finish, weight_only)
        return fn
    return decorate


def get_method(name: str) -> Method:
    if not isinstance(name, str):
        raise TypeError(f"method must be a string such as 'rtn', got {type(name).__name__}")
    if name not in METHODS:  # a method in its own module registers itself when imported
        try:
            importlib.import_module(f"minicomp.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"minicomp.{name}":
                raise
    if name not in METHODS:
        raise ValueError(f"method={name!r} is not a known quantization method; known: {', '.join(sorted(METHODS))}")
    return METHODS[name]


@register_method("rtn", needs_calibration=False, description="round to nearest, per group min-max")
def _rtn(layer: nn.Linear, inputs, *, bits, group_size, symmetric, **options):
    return rtn_quantize(layer.weight, bits, group_size, symmetric, **options)


# ── choosing layers, swapping modules ───────────────────────────────────────────────────────


def _matches(name: str, module: nn.Module, rule) -> bool:
    if callable(rule):
        return bool(rule(name, module))
    patterns = [rule] if isinstance(rule, str) else list(rule)
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def tied_parameters(model: nn.Module) -> set[int]:
    """ids of parameters that more than one module uses (tied weights)."""
    check_module(model)
    seen: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        seen[id(p)] = seen.get(id(p), 0) + 1
    return {i for i, n in seen.items() if n > 1}


def find_linears(model: nn.Module, include=None, skip=None) -> dict[str, nn.Linear]:
    """The nn.Linear layers to quantize, {qualified name: layer}, in registration order.

    include / skip: a glob pattern ("*.attn.*"), a list of them, or a function (name, module) -> bool.
    Layers with a tied weight are left out unless `include` is given and matches them, and so is
    an nn.Linear inside another one found (a LoRA-style layer): it is swapped out with its parent.
    """
    check_module(model)
    for label, rule in (("include", include), ("skip", skip)):
        if rule is not None and not (callable(rule) or isinstance(rule, str) or (
                isinstance(rule, (list, tuple, set)) and all(isinstance(p, str) for p in rule))):
            raise TypeError(f"{label}={rule!r} must be a glob pattern such as '*.attn.*', a list of them, "
                            "or a function (name, module) -> bool")
    tied = tied_parameters(model)
    found = {}
    for name, m in model.named_modules():
        if not isinstance(m, nn.Linear):
            continue
        if include is not None and not _matches(name, m, include):
            continue
        if skip is not None and _matches(name, m, skip):
            continue
        if include is None and id(m.weight) in tied:
            continue
        if any(name.startswith(f"{outer}.") for outer in found):   # (parents come first in named_modules)
            continue
        found[name] = m
    return found


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule called `name` ("transformer.h.0.attn.c_attn") with `new`, in place.
    The submodule must exist: a misspelt name would otherwise add a module that nothing calls."""
    check_module(new, "new")
    if name == "":
        raise ValueError("name='' is the model itself, which set_module cannot replace; use the new module "
                         "in its place (for one layer: QuantLinear.from_linear(layer, ...), QATLinear.from_linear(layer))")
    parent_name, _, child = name.rpartition(".")
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
    except AttributeError:
        parent = None
    if parent is None or child not in parent._modules:
        names = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(name, names, n=1)
        raise ValueError(f"name={name!r} is not a submodule of the model; "
                         + (f"did you mean {close[0]!r}? " if close else "")
                         + "model.named_modules() lists them")
    setattr(parent, child, new)


# ── running calibration data ────────────────────────────────────────────────────────────────


def _device(model: nn.Module) -> torch.device | None:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return None


def default_forward(model: nn.Module, batch):
    """model(batch) for a tensor, model(**batch) for a dict, model(batch[0]) for (inputs, labels)."""
    device = _device(model)
    move = (lambda t: t.to(device)) if device is not None else (lambda t: t)
    if isinstance(batch, torch.Tensor):
        return model(move(batch))
    if isinstance(batch, Mapping):
        return model(**{k: move(v) if isinstance(v, torch.Tensor) else v for k, v in batch.items()})
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return model(move(batch[0]))
    raise TypeError(f"cannot feed a calibration batch of type {type(batch).__name__} to the model; "
                    "pass forward=lambda model, batch: ... (e.g. lambda m, b: m.encode(b))")


def _batches(calibration) -> list:
    if calibration is None:
        return []
    if isinstance(calibration, (torch.Tensor, Mapping)):
        return [calibration]
    if not isinstance(calibration, Iterable):
        raise TypeError(f"calibration must be a tensor or an iterable of batches, got {type(calibration).__name__}")
    if (isinstance(calibration, tuple) and len(calibration) == 2
            and all(isinstance(t, torch.Tensor) and t.dim() for t in calibration)
            and calibration[0].is_floating_point() and not calibration[1].is_floating_point()
            and len(calibration[0]) == len(calibration[1])):
        raise ValueError("calibration=(inputs, labels) would be read as two batches, and the labels would go "
                         "through the model; pass the inputs alone (calibration=x) or a list of pairs, [(x, y)]")
    batches = list(calibration)
    if not batches:
        raise ValueError("calibration is empty; expected at least one batch")
    return batches


def _note(e: BaseException, text: str) -> None:
    """Add where an error happened under its message (Python 3.11+; before that, nothing)."""
    if hasattr(e, "add_note"):
        e.add_note(f"(minicomp: {text})")


def _describe(batch) -> str:
    if isinstance(batch, torch.Tensor):
        return f"a {batch.dtype} tensor {list(batch.shape)}"
    if isinstance(batch, (tuple, list)):
        return f"a {type(batch).__name__} of {len(batch)}: " + ", ".join(_describe(b) for b in batch[:3])
    return type(batch).__name__


def _head(batch, n: int):
    """The first n examples of a calibration batch: a tensor, or a dict, tuple or list whose tensors
    share their first dimension, each cut to [:n] (other entries kept). Anything else is returned
    as it is (a namedtuple, say, or tensors of different lengths)."""
    if isinstance(batch, Mapping):
        parts = list(batch.values())
    else:
        parts = list(batch) if type(batch) in (tuple, list) else [batch]
    tensors = [t for t in parts if isinstance(t, torch.Tensor)]
    if not tensors or any(t.dim() == 0 for t in tensors) or len({t.shape[0] for t in tensors}) != 1:
        return batch

    def cut(t):
        return t[:n] if isinstance(t, torch.Tensor) else t

    if isinstance(batch, Mapping):
        return {k: cut(v) for k, v in batch.items()}
    return type(batch)(map(cut, batch)) if isinstance(batch, (tuple, list)) else cut(batch)


class _Stop(BaseException):
    """Raised by a hook to end a forward pass early (BaseException, so no `except Exception` eats it)."""


@torch.no_grad()
def run_batches(model: nn.Module, batches: list, forward: Callable | None = None) -> None:
    """Run every batch of the list `batches` through `model` in eval mode without gradients (the
    mode is restored). A lone tensor is one batch: [batch] (a tensor iterates over its rows)."""
    check_module(model)
    if isinstance(batches, (torch.Tensor, Mapping)):
        raise TypeError(f"batches must be a list of batches, got a {type(batches).__name__}; for one batch, "
                        "pass [batch]")
    if not hasattr(batches, "__len__"):   # a generator: its length is needed to say which batch failed
        batches = list(batches)
    if forward is not None and not callable(forward):
        raise TypeError(f"forward must be None or a function forward(model, batch), got {type(forward).__name__}")
    forward = forward or default_forward
    was_training = model.training
    model.eval()
    try:
        for i, batch in enumerate(batches):
            try:
                forward(model, batch)
            except _Stop:
                pass
            except Exception as e:
                which = f" {i} of {len(batches)}" if len(batches) > 1 else ""
                _note(e, f"raised by the model on calibration batch{which}, {_describe(batch)}. Each item of "
                         "`calibration` is one batch, fed as model(batch), model(**batch) or model(batch[0]); "
                         "check its shape against the model's input, or pass forward=lambda model, batch: ...")
                raise
    finally:
        model.train(was_training)


def _rows(x) -> torch.Tensor:
    """A copy of a layer's input x [..., in] as [tokens, in], or ValueError if it has no feature dimension."""
    if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[-1] == 0:
        raise ValueError(f"the calibration data gives this layer an input of shape "
                         f"{tuple(getattr(x, 'shape', ()))}; expected [..., in_features] (check calibration)")
    return x.detach().reshape(-1, x.shape[-1]).clone()


def capture_inputs(model: nn.Module, layer: nn.Module, calibration, forward: Callable | None = None,
                   stop_early: bool = True) -> list[torch.Tensor]:
    """The inputs `layer` receives while the calibration batches run: one [tokens, in] per call.

    With stop_early, each forward pass ends as soon as the layer has its input (nothing after it
    needs to run), so capturing layer k costs a partial forward pass.
    """
    check_module(layer, "layer")
    check_module(model)
    stop_early = check_flag("stop_early", stop_early)
    if not any(m is layer for m in model.modules()):
        raise ValueError("layer is not a module of model, so no input would reach it; pass one of "
                         "model's own layers (find_linears(model) lists the linear ones)")
    captured: list[torch.Tensor] = []

    def hook(module, args):
        captured.append(_rows(args[0]))  # [tokens, in], copied: the model may still change x in place
        if stop_early:
            raise _Stop

    handle = layer.register_forward_pre_hook(hook)
    try:
        run_batches(model, _batches(calibration), forward)
    finally:
        handle.remove()
    return captured


def _version(x: torch.Tensor) -> int | None:
    """How many times x has been changed in place (x += f(x)); None for a tensor made in
    torch.inference_mode, which keeps no count."""
    return None if x.is_inference() else x._version


def capture_shared_inputs(model: nn.Module, layers: list[nn.Module], calibration,
                          forward: Callable | None = None) -> tuple[list[torch.Tensor], int]:
    """The inputs of layers[0], as `capture_inputs`, and how many of `layers` share them.

    Returns (inputs, n): layers[0:n] receive the very same tensor in every calibration batch (the
    query, key and value projections of an attention block do), unchanged in between, so one
    capture serves all n and quantizing layers[0] cannot change what the others see. Each forward
    pass stops at the first of `layers` that gets a different input, or the same one changed in
    place (x += f(x) after layers[0]).
    """
    if not isinstance(layers, (list, tuple)) or not layers:
        raise TypeError(f"layers must be a non-empty list of modules, got {layers!r}")
    for layer in layers:
        check_module(layer, "layers")
    captured: list[torch.Tensor] = []
    shared = set(range(1, len(layers)))  # candidates; a batch removes those that do not share

    def hook_for(j):
        def hook(module, args):
            x = args[0]
            if j == 0:
                state["x"], state["version"], state["seen"] = x, _version(x), set()
                captured.append(_rows(x))  # [tokens, in], a copy
            elif state["x"] is not None:
                if x is not state["x"] or _version(x) != state["version"]:  # not the very same values
                    raise _Stop
                state["seen"].add(j)
        return hook

    handles = [layer.register_forward_pre_hook(hook_for(j)) for j, layer in enumerate(layers)]
    try:
        for batch in _batches(calibration):
            state = {"x": None, "seen": set()}
            run_batches(model, [batch], forward)
            shared &= state["seen"]
    finally:
        for h in handles:
            h.remove()
    n = 1
    while n in shared:
        n += 1
    return captured, n


def observe_inputs(model: nn.Module, layers: Mapping[str, nn.Module], calibration, forward=None,
                   observer: str = "minmax", bits: int = 8, symmetric: bool = False, progress: bool = False,
                   **observer_options) -> dict[str, Observer]:
    """One pass over the calibration batches with an observer on each layer's input (a bar over
    the batches with progress=True); `observer_options` go to the observer (percentile=99.9)."""
    check_flag("progress", progress)
    if not isinstance(layers, Mapping):
        raise TypeError(f"layers must be a dict {{name: module}} (as find_linears returns), got {type(layers).__name__}")
    check_observer(observer)   # (make_observer would name it `kind`)
    observers = {name: make_observer(observer, bits, symmetric, **observer_options) for name in layers}

    def hook_for(obs: Observer):
        def hook(module, args):
            obs(args[0])  # records the range; returns None so the input is unchanged
        return hook

    handles = [layer.register_forward_pre_hook(hook_for(observers[name])) for name, layer in layers.items()]
    try:
        batches = _batches(calibration)
        run_batches(model, tqdm(batches, desc=f"observing inputs ({observer})", disable=not progress), forward)
    finally:
        for h in handles:
            h.remove()
    return observers


# ── the driver ──────────────────────────────────────────────────────────────────────────────


def quantize_model(model: nn.Module, method: str = "rtn", *, bits: int = 4, group_size: int = 128,
                   symmetric: bool = False, calibration=None, forward: Callable | None = None,
                   include=None, skip=None, act_bits: int | None = None, act_mode: str = "dynamic",
                   act_symmetric: bool = False, observer: str = "minmax", observer_options: dict | None = None,
                   progress: bool = True, pack: bool = False, by_block: bool = True, **options) -> nn.Module:
    """Quantize the nn.Linear layers of `model` in place, layer by layer; returns `model`.

    method       "rtn" (here), "gptq", "awq" (their own modules); see `METHODS`
    bits, group_size, symmetric   weight format; group_size=-1 means one group per row
    calibration  an iterable of batches (needed by data-driven methods and by static W8A8)
    forward      forward(model, batch); default: model(batch), model(**batch) or model(batch[0])
    include/skip glob patterns, lists of them, or functions (name, module) -> bool
    act_bits     None for weight-only; 8 for W8A8 with act_mode "dynamic" or "static" (calibrated
                 with `observer`: "minmax", "moving_average", "percentile" or "mse"; observer_options
                 are its own, such as {"percentile": 99.9})
    pack         True: swap in `kernels.PackedLinear` (bit-packed codes, fused kernels) instead of
                 `QuantLinear`, so the whole model runs on the packed kernels (weight-only)
    by_block     capture each layer's inputs by running its block alone (a transformer layer, found
                 as the nn.ModuleList holding the layers) on that block's cached inputs, instead of
                 the model from the start for every layer: the same inputs, several times faster on
                 deep models (`minicomp.blockwise`); used only where the blocks are checked to be chained
    **options    passed to the method (e.g. clip="mse" for rtn; fold=False keeps every AWQ scale
                 as an explicit input division instead of folding it where exact)
    """
    m = get_method(method)
    bits = check_bits(bits)
    check_group_size(group_size)
    if act_mode not in ("dynamic", "static"):
        raise ValueError(f"act_mode={act_mode!r} must be 'dynamic' or 'static'")
    if act_bits is not None:
        act_bits = check_bits(act_bits, "act_bits")
    elif act_mode == "static":
        raise ValueError("act_mode='static' quantizes activations; give act_bits too (e.g. act_bits=8)")
    check_observer(observer)
    if observer_options is not None and not isinstance(observer_options, Mapping):
        raise TypeError(f"observer_options must be a dict of the observer's options, such as "
                        f"{{'percentile': 99.9}}, got {type(observer_options).__name__}")
    if observer_options and not (act_bits is not None and act_mode == "static"):
        raise ValueError("observer_options are for the activation observer, which runs only with "
                         "act_bits=8, act_mode='static'; leave them out otherwise")
    if observer_options:   # an option the observer does not take: now, not after the weights
        make_observer(observer, act_bits, act_symmetric, **observer_options)
    for name, flag in (("symmetric", symmetric), ("act_symmetric", act_symmetric), ("pack", pack),
                       ("by_block", by_block), ("progress", progress)):
        check_flag(name, flag)
    if m.weight_only and act_bits is not None:
        raise ValueError(f"method={method!r} is weight-only; it needs act_bits=None, got act_bits={act_bits}. "
                         "For W8A8 use method='rtn' or 'gptq'")
    if pack and act_bits is not None:
        raise ValueError(f"pack=True runs weight-only packed kernels; it needs act_bits=None, got act_bits={act_bits}")
    layers = find_linears(model, include, skip)
    if "" in layers:
        raise ValueError("model is itself a single nn.Linear; quantize it with "
                         "QuantLinear.from_linear(model, bits, group_size) instead")
    if not layers:
        raise ValueError(f"no nn.Linear layers to quantize (include={include!r}, skip={skip!r})")
    for name, layer in layers.items():
        if group_size != -1 and layer.in_features % group_size:
            raise ValueError(f"group_size={group_size} must divide in_features={layer.in_features} of layer "
                             f"{name!r}; use group_size=-1 (per channel), a divisor, or skip={[name]!r}")
    batches = _batches(calibration)
    needs_data = m.needs_calibration or (act_bits is not None and act_mode == "static")
    if needs_data and not batches:
        why = f"method={method!r}" if m.needs_calibration else "act_mode='static'"
        raise ValueError(f"{why} needs calibration=batches of example inputs, got calibration=None")

    act = {}
    if act_bits is not None and act_mode == "static":
        observers = observe_inputs(model, layers, batches, forward, observer, act_bits, act_symmetric,
                                   progress, **(observer_options or {}))
        for name, obs in observers.items():
            if obs.batches:  # a layer the calibration never reached keeps dynamic activations
                scale, zero = obs.qparams()
                act[name] = dict(act_scale=scale, act_zero=zero)

    names, shared = list(layers), 0  # layers[names[k]] for k < shared use the inputs last captured
    flow = Blockwise(model, names, batches, forward) if m.needs_calibration and by_block else None
    bar = tqdm(total=len(names), desc=f"{method} {bits}-bit", disable=not progress)
    k, inputs = 0, None
    while k < len(names):
        group = names[k:k + 1]
        if m.needs_calibration:
            if k >= shared:  # layers that share one input tensor share one capture
                where, data, how = flow.source(names[k]) if flow else (model, batches, forward)
                inputs, n = capture_shared_inputs(where, [layers[x] for x in names[k:]], data, how)
                shared = k + n
            if m.joint:
                group = names[k:shared]
        k += len(group)
        bar.update(len(group))
        if inputs is not None and not inputs:
            continue  # never called on the calibration data (e.g. an unused pooler): left in float
        opts = dict(bits=bits, group_size=group_size, symmetric=symmetric, **options)
        try:
            qs = m.fn([layers[x] for x in group], inputs, **opts) if m.joint else [m.fn(layers[group[0]], inputs, **opts)]
        except Exception as e:
            _note(e, f"while quantizing {', '.join(group)} with method={method!r}")
            raise
        for name, q in zip(group, qs, strict=True):
            layer = layers[name]
            if not isinstance(q, nn.Module) and pack:
                from minicomp.kernels import PackedLinear

                q = PackedLinear.from_quantized(q, layer.bias)
            elif not isinstance(q, nn.Module):
                q = QuantLinear(q, layer.bias, act_bits=act_bits, act_symmetric=act_symmetric, **act.get(name, {}))
            set_module(model, name, q.to(layer.weight.device))
    bar.close()
    if m.finish is not None:
        m.finish(model, batches, forward, pack=pack, progress=progress, **options)
    return model


def storage_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes to store `model` with quantized weights packed at their bit width.

    {"quantized": for each quantized layer, QuantizedWeight.nbytes (or PackedLinear.weight_nbytes)
    plus its other buffers (the bias; AWQ's input_scale; a static act_scale and act_zero), "float":
    every other parameter and buffer (memory shared by two of them, once: tied weights), "total": the sum}. hardware.model_bytes
    measures what the tensors occupy in memory instead, where codes take a whole byte each until
    they are packed.
    """
    from minicomp.hardware.sizes import union_bytes
    from minicomp.kernels import PackedLinear

    check_module(model)
    quantized, seen = 0, set()
    for layer in model.modules():
        if isinstance(layer, PackedLinear):
            weight, weight_buffers = layer.weight_nbytes, {"qweight", "scales", "zeros", "perm"}
        elif isinstance(layer, QuantLinear):
            weight, weight_buffers = layer.qweight.nbytes, {"codes", "scale", "zero", "perm"}
        else:
            continue
        others = [t for name, t in layer.named_buffers(recurse=False)
                  if name not in weight_buffers and id(t) not in seen]
        quantized += weight + sum(t.numel() * t.element_size() for t in others)
        seen.update(id(t) for t in layer.buffers())
    floats = union_bytes([t for t in (*model.parameters(), *model.buffers()) if id(t) not in seen])
    return {"quantized": quantized, "float": floats, "total": quantized + floats}


__all__ = [
    "Method", "METHODS", "register_method", "get_method", "find_linears", "tied_parameters", "set_module",
    "default_forward", "run_batches", "capture_inputs", "capture_shared_inputs", "observe_inputs", "quantize_model", "storage_bytes",
]
