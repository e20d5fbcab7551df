"""``python -m minilearn`` runs the command line."""

import sys

from minilearn.cli import main

sys.exit(main())
