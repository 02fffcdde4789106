#!/usr/bin/env python3
"""The test pattern generator at the path the integration document and the consumer's verify
script look for; a thin wrapper around `tickstockpl publish-test`.

People run it as `python scripts/test_pattern_event.py`, with whatever Python is first on their
PATH, which lacks our dependencies. So, as src/services/pattern_detection_service.py does, it runs
itself again under the project's .venv when there is one, with the checkout on sys.path.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    venv = ROOT / ".venv"
    venv_python = venv / "bin" / "python"  # not resolved: the link is what makes it the venv's
    if venv_python.exists() and Path(sys.prefix).resolve() != venv.resolve():
        os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])
    sys.path.insert(0, str(ROOT))  # run by path from a checkout
    from tickstockpl.exitcodes import RET_CONFIG  # no third-party imports

    try:
        from tickstockpl.cli import main as cli_main
    except ImportError as exc:
        print(f"test_pattern_event: {exc}: run `make install` first (it builds {venv})")
        return RET_CONFIG
    return cli_main(["publish-test", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
