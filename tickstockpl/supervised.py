"""How supervisord runs a program: `python -m tickstockpl.supervised tickstockpl.services.<name>`.

It runs the module in this same process (signals reach it directly; nothing is in between) and
changes one thing: supervisord honours `exitcodes` only for a program that stayed up `startsecs`;
one that exits sooner is retried like a crash, whatever its code. So a program that exits
RET_CONFIG (misconfigured: restarting cannot help) at once is held until `startsecs` has passed,
and supervisord then records an expected exit 78 instead of a restart loop. Any other exit is
passed on unchanged and immediately.
"""

from __future__ import annotations

import runpy
import sys
import time

from tickstockpl.exitcodes import RET_CONFIG, RET_USAGE

STARTSECS = 2.0  # supervisord.conf's startsecs for every program (a test keeps them equal)


def exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, flush=True)  # sys.exit("message"): on stdout, as everything else
    return 1


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].startswith("tickstockpl.services."):
        print("usage: python -m tickstockpl.supervised tickstockpl.services.<program>", flush=True)
        return RET_USAGE
    started = time.monotonic()
    sys.argv = [argv[0]]
    try:
        runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exit_code(exc)
    if code == RET_CONFIG:
        time.sleep(max(0.0, STARTSECS + 0.5 - (time.monotonic() - started)))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
