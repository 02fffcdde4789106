"""How supervisord runs a program: `python -m tickstockpl.supervised tickstockpl.services.<name>`.

It runs the module in this same process (signals reach it directly; nothing is in between) and
changes one thing: supervisord honours `exitcodes` only for a program that stayed up `startsecs`;
one that exits sooner is retried like a crash, whatever its code. So a program that exits
RET_CONFIG (misconfigured: restarting cannot help) at once is held until `startsecs` has passed,
and supervisord then records an expected exit 78 instead of a restart loop. Any other exit is
passed on unchanged and immediately.

On a host that runs only detector shards (TICKSTOCKPL_DETECTORS_ONLY, docs/scaling.md) the other
programs belong to the main host (one relay per Redis, one heartbeat): they say so and exit 0, held
like a misconfigured exit, so supervisord records them as done rather than retrying them.
"""

from __future__ import annotations

import runpy
import sys
import time

from tickstockpl.exitcodes import RET_CONFIG, RET_OK, RET_USAGE
from tickstockpl.settings import Settings, SettingsError

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
    if not runs_here(argv[0]):
        print(f"{argv[0]}: the main host runs it (TICKSTOCKPL_DETECTORS_ONLY here)", flush=True)
        code = RET_OK
    else:
        sys.argv = [argv[0]]
        try:
            runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exit_code(exc)
    if code == RET_CONFIG or (code == RET_OK and time.monotonic() - started < STARTSECS):
        time.sleep(max(0.0, STARTSECS + 0.5 - (time.monotonic() - started)))
    return code


def runs_here(module: str) -> bool:
    """Whether this host runs `module`: all do, but a detectors-only host runs just the detector.
    A bad setting is the program's to report (it exits RET_CONFIG naming it)."""
    if module == "tickstockpl.services.detector":
        return True
    try:
        return not Settings.from_env().detectors_only
    except SettingsError:
        return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
