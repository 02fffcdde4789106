"""`tickstockpl ...`: one entry point, one module per subcommand (imported only when used).

Each command module has `add_arguments(parser)` and `run(args, settings) -> int`; its one-line help
lives here so `tickstockpl --help` imports nothing.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tickstockpl.exitcodes import RET_CONFIG
from tickstockpl.settings import Settings, SettingsError

COMMANDS: dict[str, tuple[str, str]] = {
    "replay": (
        "tickstockpl.replay",
        "run CSV market data through the detector; prints patterns by name and symbol (--publish to send)",
    ),
    "publish-test": (
        "tickstockpl.commands.publish_test",
        "publish test pattern events (audit row first), as the integration document's generator",
    ),
    "deadletters": (
        "tickstockpl.commands.deadletters",
        "list the records the relay dead-lettered (reason, payload); --requeue ID after a fix",
    ),
    "up": (
        "tickstockpl.commands.stack",
        "start the stack (docker compose, or supervisord) and wait until healthy",
    ),
    "down": ("tickstockpl.commands.stack", "stop everything `up` started, and nothing else"),
    "status": (
        "tickstockpl.commands.stack",
        "supervisord's view of the programs, the required checks, and doctor",
    ),
    "load-history": (
        "tickstockpl.commands.load_history",
        "load OHLCV bars from CSV files into historical_bars (idempotent), for backtests",
    ),
    "backtest": (
        "tickstockpl.commands.backtest",
        "backtest patterns over stored (or --csv) history with the service's engine",
    ),
    "heartbeat": (
        "tickstockpl.commands.heartbeat",
        "show the heartbeat key's age; --check exits 0/1 for container health checks",
    ),
    "doctor": (
        "tickstockpl.commands.doctor",
        "the integration checklist (stores, schema, grants, heartbeat, consumer); exit 1 on a failure",
    ),
    "tail": (
        "tickstockpl.commands.tail",
        "follow the producer's channels, one readable line per event (--json for raw)",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tickstockpl", description="TickStockPL, the producer for TickStockAppV2"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    args_list = list(sys.argv[1:] if argv is None else argv)
    chosen = next((arg for arg in args_list if not arg.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
    args = parser.parse_args(args_list)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"tickstockpl: configuration error: {exc}")
        return RET_CONFIG
    result: int = args.run(args, settings)
    return result


if __name__ == "__main__":
    sys.exit(main())
