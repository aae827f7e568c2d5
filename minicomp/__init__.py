"""minicomp: a from-scratch library for making neural networks cheaper to run.

Two halves, one course:

* knowledge distillation (`minicomp.distill`): a small student learns from a large teacher;
* quantization (`minicomp.quant`, `observers`, `rtn`, `gptq`, `awq`, `pack`, `kernels`): the same weights
  stored in fewer bits.

Each module is named after the lesson that teaches it and can be read in one sitting. The most
used names are re-exported here; importing them is lazy, so `import minicomp` stays fast.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    # distillation
    "soft_targets": "distill", "kd_loss": "distill", "distillation_loss": "distill",
    "Distiller": "distill",
    # quantization
    "compute_qparams": "quant", "quantize": "quant", "dequantize": "quant",
    "fake_quantize": "quant", "QuantizedWeight": "quant",
    "rtn_quantize": "rtn", "QuantLinear": "rtn",
    "quantize_model": "calibrate",
    "pack_int4": "pack", "unpack_int4": "pack",
    "PackedLinear": "kernels", "pack_model": "kernels",
    "save_gguf": "export", "save_quantized": "export", "load_quantized": "export",
    # course
    "check": "grading",
    "pick_device": "hardware",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"minicomp.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'minicomp' has no attribute {name!r}")
