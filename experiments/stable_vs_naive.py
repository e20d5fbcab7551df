"""Run the experiment stable against naive softmax cross-entropy; the same as `minilearn experiment stable_vs_naive`.

Usage: python experiments/stable_vs_naive.py [--config FILE] [--out DIR] [--jobs N] [--backend NAME]
[--quick] [--shared-lr RATE] [--overwrite] [--quiet]. Run it from a source checkout;
it puts the checkout first on sys.path, so minilearn needs no install.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minilearn.cli import main  # noqa: E402 - needs the sys.path entry above

if __name__ == "__main__":
    sys.exit(main(["experiment", "stable_vs_naive", *sys.argv[1:]]))
