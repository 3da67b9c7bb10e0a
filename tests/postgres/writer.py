"""One server node in the hammer test: stores random batches into shared repositories.

Run as ``python writer.py DSN CHANNEL BACKEND SEED STORES``. Prints ``ready``
once its event log is open, waits for a line on stdin, stores, then prints
one JSON line: every store call's repository, stored (id, sequence) pairs
and duplicates, in call order.
"""

from __future__ import annotations

import json
import random
import sys

import anyio

from lfws_adapters.postgres_event_log import PostgresEventLog
from lfws_core.events import event_from_json

REPOSITORIES = ("todos", "notes", "tags")
IDS_PER_REPOSITORY = 120


def main() -> None:
    dsn, channel, backend, seed, stores = sys.argv[1:]
    rng = random.Random(int(seed))

    async def run() -> list[dict[str, object]]:
        log = PostgresEventLog(dsn, channel=channel, pool_size=3)
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        calls: list[dict[str, object]] = []
        try:
            for _ in range(int(stores)):
                repository = rng.choice(REPOSITORIES)
                # Ids from a small shared pool: the other writers push the same ones.
                batch = [
                    f"{repository}-{rng.randrange(IDS_PER_REPOSITORY)}"
                    for _ in range(rng.randint(1, 4))
                ]
                events = [
                    event_from_json(
                        {
                            "_event_id": event_id,
                            "_operation": 1,
                            "_created_at": "2026-01-01T00:00:00.000Z",
                            "_data_id": event_id,
                            "_data": {"writer": seed},
                        }
                    )
                    for event_id in batch
                ]
                result = await log.store(repository, events)
                calls.append(
                    {
                        "repository": repository,
                        "stored": [[e.event_id, e.server_sequence] for e in result.stored],
                        "duplicates": list(result.duplicates),
                    }
                )
        finally:
            await log.aclose()
        return calls

    print(json.dumps(anyio.run(run, backend=backend)), flush=True)


if __name__ == "__main__":
    main()
