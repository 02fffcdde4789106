#!/usr/bin/env python3
"""The test pattern generator at the path the integration document and the consumer's verify
script look for; a thin wrapper around `tickstockpl publish-test`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run by path from a checkout

from tickstockpl.cli import main

if __name__ == "__main__":
    sys.exit(main(["publish-test", *sys.argv[1:]]))
