"""Calibration block by block: each repeated block (a transformer layer) runs on its own cached inputs.

`quantize_model` needs, for every layer in turn, the inputs that layer receives from the model as
quantized so far. Run naively, that is one forward pass of the model up to the layer for each
layer: for MiniLM's 36 linear layers about a dozen passes of the whole model over the calibration
data. Real GPTQ and AWQ code (IST-DASLab/gptq, llm-awq) does it block by block instead:

1. run the calibration batches once, up to the first block, and keep what it receives: its
   hidden states and its other arguments (the attention mask, ...) per batch;
2. capture each of the block's layers by running *that block alone* on those inputs, quantize
   the layer and swap it in, as before;
3. run the finished (quantized) block on its inputs: its outputs are the next block's inputs.

Every layer sees exactly the inputs the whole model would give it, so the result is the same,
and each block runs about three times instead of the model's prefix running once per layer.

This needs the blocks to be chained: block i + 1 gets block i's output as its first argument,
and the same other arguments. `block_inputs` checks that on the first batch and returns None
when it does not hold (or when an argument is something it cannot reuse, such as a KV cache),
and `quantize_model` then runs the whole model for each layer, as before.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn


def find_blocks(model: nn.Module, names: Sequence[str]) -> tuple[list[nn.Module], list[list[str]]] | None:
    """The repeated blocks holding the layers `names` (in model order), or None.

    The blocks are the children of the nn.ModuleList that holds the most of `names` (BERT's
    `encoder.layer`, TinyGPT's `transformer.h`), provided every child holds at least one of
    them and the layers of each block come together in `names`, block after block. Returns
    (blocks, the names in each block).
    """
    best = None
    for prefix, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) < 2:
            continue
        head = f"{prefix}." if prefix else ""
        per_block = [[n for n in names if n.startswith(f"{head}{i}.")] for i in range(len(module))]
        count = sum(map(len, per_block))
        if all(per_block) and (best is None or count > best[0]):
            best = (count, list(module), per_block)
    if best is None:
        return None
    _, blocks, per_block = best
    flat = [n for block in per_block for n in block]
    start = names.index(flat[0])
    if list(names[start:start + len(flat)]) != flat:  # not contiguous, or not in block order
        return None
    return blocks, per_block


def _reusable(value) -> bool:
    if value is None or isinstance(value, (torch.Tensor, bool, numbers.Number, str)):
        return True
    if isinstance(value, (tuple, list)):
        return all(_reusable(v) for v in value)
    return False


def _copy(value):
    """value with every tensor in it (in tuples and lists too) replaced by a detached copy."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_copy(v) for v in value)
    return value


def _hidden(output):
    """The hidden states in a block's output: the output itself, or the first item of a tuple."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


@torch.no_grad()
def block_inputs(model: nn.Module, blocks: list[nn.Module], batches: list, forward: Callable | None = None
                 ) -> list | None:
    """What blocks[0] receives for each batch, [(args, kwargs)], or None if the blocks are not chained.

    The batches run as in `calibrate.run_batches(model, batches, forward)`. On the first batch
    every block is watched: block i + 1 must get block i's output as its first argument and the
    very same other arguments, all of kinds that can be passed again (tensors, numbers, ...).
    The inputs are kept as copies: a block may change its input in place (x += f(x); return x).
    """
    from minicomp.calibrate import _Stop, run_batches  # (calibrate imports this module)

    seen_in, seen_out, first = [], [], []

    def pre_hook(module, args, kwargs):
        seen_in.append((args, dict(kwargs)))  # the tensors themselves: the checks below compare them
        if not first:  # blocks[0] on batch 0, copied before it runs (and maybe changes them)
            first.append((_copy(args), {k: _copy(v) for k, v in kwargs.items()}))

    def post_hook(module, args, kwargs, output):
        seen_out.append(output)

    handles = [b.register_forward_pre_hook(pre_hook, with_kwargs=True) for b in blocks]
    handles += [b.register_forward_hook(post_hook, with_kwargs=True) for b in blocks]
    try:
        run_batches(model, batches[:1], forward)
    finally:
        for h in handles:
            h.remove()
    if len(seen_in) != len(blocks) or len(seen_out) != len(blocks):
        return None  # a block ran twice, or not at all
    for (args, kwargs) in seen_in:
        if not args or not isinstance(args[0], torch.Tensor) or not _reusable((args[1:], list(kwargs.values()))):
            return None
    for i in range(len(blocks) - 1):
        (a0, k0), (a1, k1) = seen_in[i], seen_in[i + 1]
        if (a1[0] is not _hidden(seen_out[i]) or len(a0) != len(a1) or any(x is not y for x, y in zip(a0[1:], a1[1:]))
                or k0.keys() != k1.keys() or any(k0[k] is not k1[k] for k in k0)):
            return None
    inputs = first

    def first_only(module, args, kwargs):
        inputs.append((_copy(args), {k: _copy(v) for k, v in kwargs.items()}))
        raise _Stop

    handle = blocks[0].register_forward_pre_hook(first_only, with_kwargs=True)
    try:
        run_batches(model, batches[1:], forward)  # each pass ends at block 0 (_Stop)
    finally:
        handle.remove()
    return inputs if len(inputs) == len(batches) else None


def call_block(block: nn.Module, inputs) -> object:
    """block(*args, **kwargs) for one cached (args, kwargs): the `forward` that runs a block alone.

    The block gets copies of the cached tensors, so one that changes its input in place
    (x += f(x)) leaves the cache as it was for the next run."""
    args, kwargs = inputs
    return block(*_copy(args), **{k: _copy(v) for k, v in kwargs.items()})


@torch.no_grad()
def next_inputs(block: nn.Module, inputs: list) -> list:
    """The next block's inputs: this block's outputs as the first argument, the rest unchanged."""
    was_training = block.training
    block.eval()
    try:
        # block_inputs checked that every block but the last hands on its hidden states
        return [((_hidden(call_block(block, (args, kwargs))), *args[1:]), kwargs) for args, kwargs in inputs]
    finally:
        block.train(was_training)


class Blockwise:
    """Where to capture each layer's inputs from: its block alone, on cached inputs, or the model.

        flow = Blockwise(model, names, batches, forward)
        module, data, how = flow.source(name)   # run `how(module, item)` for each item of `data`

    Ask for the layers in model order, swapping each quantized layer in before asking for the
    next: a block's outputs are computed, for the next block, once every layer before is done.
    """

    def __init__(self, model: nn.Module, names: Sequence[str], batches: list, forward: Callable | None = None):
        self.model, self.batches, self.forward = model, batches, forward
        found = find_blocks(model, names)
        self.blocks, per_block = found if found else ([], [])
        self.block_of = {n: i for i, block in enumerate(per_block) for n in block}
        self.current, self.inputs, self.chained = 0, None, bool(self.blocks)

    def source(self, name: str) -> tuple[nn.Module, list, Callable | None]:
        i = self.block_of.get(name)
        if i is None or not self.chained:
            return self.model, self.batches, self.forward
        if self.inputs is None:  # the first layer in a block: what block 0 receives, once
            self.inputs = block_inputs(self.model, self.blocks, self.batches, self.forward)
            if self.inputs is None:
                self.chained = False
                return self.model, self.batches, self.forward
        while self.current < i:
            self.inputs = next_inputs(self.blocks[self.current], self.inputs)
            self.current += 1
        return self.blocks[i], self.inputs, call_block


__all__ = ["Blockwise", "find_blocks", "block_inputs", "call_block", "next_inputs"]
