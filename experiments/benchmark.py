"""Benchmark one training epoch of minilearn against the numpy floor, scikit-learn and PyTorch.

Usage: python experiments/benchmark.py [--quick] [--dtype float32|float64|both]
       [--samples N] [--features D] [--hidden H] [--classes K] [--batch-size B]
       [--repeats R] [--no-sklearn] [--no-torch]
The same command is available as ``minilearn bench``.
"""

import sys

from minilearn.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
