"""`tickstockpl deadletters`: the records the relay gave up on, why, and a way back after a fix.

Lists the dead letters newest first with their reason, stage, SQLSTATE and original payload;
`--json` prints one JSON object per line for scripts; `--requeue ID` puts a record's original
payload back on the outbox, where it goes through validation and the audit again.
"""

from __future__ import annotations

import argparse
import json
import time

import redis

from tickstockpl import contract
from tickstockpl.commands.common import store_error_exit
from tickstockpl.errors import RedisUnavailable
from tickstockpl.exitcodes import RET_OK, RET_USAGE
from tickstockpl.relay import deadletters, lists
from tickstockpl.settings import Settings
from tickstockpl.stores import redis_client

PAYLOAD_PREVIEW = 160  # characters of payload shown per record without --json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per dead letter (full payload)")
    parser.add_argument(
        "--limit", type=int, default=50, help="show at most N, newest first (0: all; default 50)"
    )
    parser.add_argument(
        "--requeue", metavar="ID", action="append", default=[], help="put a dead letter back on the outbox"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.limit < 0:
        print("deadletters: --limit must be 0 or more")
        return RET_USAGE
    client = redis_client(settings)
    try:
        if args.requeue:
            return _requeue(client, args.requeue, args.json)
        letters = deadletters.dead_letters(client, limit=args.limit)
        total = lists.length(client, contract.KEY_DEAD_LETTERS)
    except RedisUnavailable as exc:
        return store_error_exit("deadletters", exc, settings)
    finally:
        client.close()
    if args.json:
        for letter in letters:
            print(json.dumps(letter.to_json(), ensure_ascii=False, sort_keys=True))
        return RET_OK
    if not letters:
        print(f"no dead letters ({contract.KEY_DEAD_LETTERS} is empty)")
        return RET_OK
    print(
        f"{total} dead letter(s) in {contract.KEY_DEAD_LETTERS}, newest first" + _shown(len(letters), total)
    )
    for letter in letters:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(letter.dead_lettered_at))
        code = f" sqlstate={letter.sqlstate}" if letter.sqlstate else ""
        flow = f" flow_id={letter.flow_id}" if letter.flow_id else ""
        print(f"\n{letter.id}  {when}  stage={letter.stage}{code}{flow}")
        print(f"  reason:  {letter.reason}")
        print(f"  payload: {_preview(letter)}")
    print(f"\nrequeue one after a fix: tickstockpl deadletters --requeue {letters[0].id}")
    return RET_OK


def _requeue(client: redis.Redis, ids: list[str], as_json: bool) -> int:
    """Requeue each ID; an unknown ID is a usage error (nothing else is skipped silently)."""
    missing = []
    for letter_id in ids:
        letter = deadletters.requeue_dead_letter(client, letter_id)
        if letter is None:
            missing.append(letter_id)
            continue
        if as_json:
            print(json.dumps({"requeued": letter.id, "flow_id": letter.flow_id}))
        else:
            print(f"requeued {letter.id} ({letter.stage}: {letter.reason[:80]}) onto {contract.KEY_OUTBOX}")
    if missing:
        print(f"deadletters: no dead letter with id {', '.join(missing)} (see `tickstockpl deadletters`)")
        return RET_USAGE
    return RET_OK


def _shown(shown: int, total: int) -> str:
    return f" (showing {shown}; --limit 0 for all)" if shown < total else ""


def _preview(letter: deadletters.DeadLetter) -> str:
    text = letter.to_json()["payload"]
    if letter.to_json()["payload_encoding"] == "base64":
        text = f"(not UTF-8, base64) {text}"
    text = text.replace("\n", "\\n")
    return text if len(text) <= PAYLOAD_PREVIEW else text[:PAYLOAD_PREVIEW] + f"... ({len(text)} chars)"
