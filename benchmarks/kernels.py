"""Packed-weight kernels against dense float: the measurements behind `minicomp bench`.

    python benchmarks/kernels.py                 # the full table, saved to benchmarks/results/
    python benchmarks/kernels.py --quick         # 4096x4096 at batches 1 and 16
    python benchmarks/kernels.py --help          # sizes, batches, repeats, device

Every speed is a ratio against float32 measured in the same run (median of interleaved
repeats); the JSON also records the machine (`minicomp.hardware.describe_machine`).
"""

import sys

from minicomp.bench import main

if __name__ == "__main__":
    sys.exit(main())
