"""The whole stack on one machine: what `tickstockpl up / down / status` (tickstockpl.commands.stack,
and so `make up / down / status`) and the foreground entry-point scripts run.

With a Docker daemon, `docker compose` does the work (compose). Without one (the embedded default,
and the path our own machines test), supervisord runs the programs from `supervisord.conf`:

  embedded.py     EmbeddedStack: up, down, status, the foreground run; waits until healthy
  stores.py       Redis and PostgreSQL: use what answers, else run local ones; apply db/init.sql
  supervisord.py  our supervisord: start it, drive it over its socket, shut it down
  checks.py       what "healthy" means to `up` and `status`: required checks, first publish, doctor
  compose.py      the Docker path
  logfile.py      the writer of var/log/stack.log, which rotates it
  base.py         StackError (with its exit code), say(), wait_until()

Everything `down` stops is that one supervisord, its children and the writer of its log, so
nothing is left behind and nothing else is touched.
"""
