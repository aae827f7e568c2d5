"""minicomp: a from-scratch library for making neural networks cheaper to run.

Two halves, one course:

* knowledge distillation (`minicomp.distill`): a small student learns from a large teacher;
* quantization (`minicomp.quant`, `rtn`, `gptq`, `awq`, `pack`, `kernels`): the same weights
  stored in fewer bits.

Each module is named after the lesson that teaches it and can be read in one sitting.
"""

__version__ = "0.1.0"
