"""The relay's parts, one idea a module; `tickstockpl.services.relay` wires them into a process.

- `decode`: the guard against what others put on the outbox (orjson fast path, contract fallback);
- `scripts`: Lua scripts as EVALSHA on a pooled connection;
- `lists`: the outbox → processing-list move, and the atomic finish (ack) of a batch;
- `batches`: one batch through decode, audit, publish and ack (the `Relay` state);
- `durability`: acks that wait for the audit rows' WAL flush, and the audit backlog's entries;
- `recovery`: records left in the processing list, stale ones, and the audit backlog, done again;
- `deadletters`: records the relay will not retry, for operators to read and requeue;
- `stats`: the counters and histograms the exporter reads.
"""
