"""Named exit codes, shared by the CLI and the supervised processes (supervisord's `exitcodes`).

From sysexits.h where one fits, so operators and supervisord can tell "fix the configuration"
from "try again".
"""

from typing import Final

RET_OK: Final = 0  # done, or stopped on request
RET_FAILED: Final = 1  # a check failed (doctor, heartbeat --check) or an unexpected error
RET_USAGE: Final = 64  # bad command-line arguments or input
RET_UNAVAILABLE: Final = 69  # Redis or PostgreSQL unreachable: worth retrying
RET_CONFIG: Final = 78  # misconfigured (bad setting, wrong password, function missing): do not restart
