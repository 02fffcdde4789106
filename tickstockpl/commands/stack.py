"""`tickstockpl up / down / status` (what `make up / down / status` run), and the foreground entry
point the launcher scripts call. Docker compose when a daemon answers, else the embedded stack;
a stack already running from var/ is always the one acted on."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tickstockpl.exitcodes import RET_CONFIG
from tickstockpl.local_servers import LocalServerError
from tickstockpl.settings import Settings
from tickstockpl.stack.base import ROOT, StackError, failed, say
from tickstockpl.stack.compose import ComposeStack, use_docker
from tickstockpl.stack.embedded import EmbeddedStack


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for health (up)")
    parser.add_argument(
        "--volumes", action="store_true", help="Docker mode, down: remove the data volumes too"
    )


def var_dir(settings: Settings, root: Path = ROOT) -> Path:
    return (root / settings.var_dir).resolve()


def run(args: argparse.Namespace, settings: Settings) -> int:
    """`tickstockpl up|down|status`: the command name picks the action."""
    stack = EmbeddedStack(settings=settings, var_dir=var_dir(settings))
    try:
        if stack.supervisord.pid() is None and use_docker(settings):
            return run_docker(args, ComposeStack(settings))
        if args.command == "up":
            return stack.up(args.timeout)
        if args.command == "down":
            return stack.down()
        return stack.status()
    except (StackError, LocalServerError) as exc:
        return failed(exc)


def run_docker(args: argparse.Namespace, stack: ComposeStack) -> int:
    """The Docker path: docker compose with docker-compose.yml (tickstockpl.stack.compose)."""
    if args.command == "up":
        return stack.up(args.timeout)
    if args.command == "down":
        return stack.down(volumes=args.volumes)
    return stack.status()


def foreground_main() -> int:
    """The entry-point scripts: the whole stack in the foreground, logging to stdout, until SIGTERM."""
    os.chdir(ROOT)  # .env and the programs' working directory, wherever the script was run from
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        say(f"configuration error: {exc}")
        return RET_CONFIG
    try:
        return EmbeddedStack(settings=settings, var_dir=var_dir(settings)).run_foreground()
    except (StackError, LocalServerError) as exc:
        return failed(exc)
