"""The words a health reading is judged in, shared by every reader and by the assessment.

One place so the heartbeat event, `tickstockpl doctor` and the exporter spell each state the same way.
"""

from __future__ import annotations

from typing import Final

# Overall status, as the consumer's own fixtures spell it (§2.5).
HEALTHY: Final = "healthy"
DEGRADED: Final = "degraded"
DOWN: Final = "down"
# Component states.
OK: Final = "ok"
UNAVAILABLE: Final = "down"  # the store does not answer
MISCONFIGURED: Final = "error"  # it answers but refuses us: wrong password, function or grant missing
DISABLED: Final = "disabled"  # audit switched off by configuration
STALE: Final = "stale"
BACKLOG: Final = "backlog"
PRESENT: Final = "present"
UNKNOWN: Final = "unknown"
FAILING: Final = "failing"  # a supervised program is FATAL or restart-looping
