"""The exercise checkers, one module per part of the course.

Importing this package registers every checker with :mod:`minicomp.grading`. Each module holds,
for each exercise: the cases (small, hand-checkable ones first), and the *known mistakes*, wrong
implementations that people really write, with the hint the report gives for each.
"""

from minicomp.checkers import (
    awq,  # noqa: F401
    basics,  # noqa: F401
    distill,  # noqa: F401
    gptq,  # noqa: F401
    kernels,  # noqa: F401
    pipeline,  # noqa: F401
    qat,  # noqa: F401
    quant,  # noqa: F401
    sentence,  # noqa: F401
)
