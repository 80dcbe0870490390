"""``python -m bench.rd``: see bench/rd/cli.py."""

import sys

from bench.rd.cli import main

if __name__ == "__main__":  # spawned worker processes import this module too; they must not run main
    sys.exit(main())
