"""Doctor's PostgreSQL checks: our credentials, the audit schema and grants, least privilege, and flows."""

from __future__ import annotations

from dataclasses import asdict

from tickstockpl import health
from tickstockpl.commands.doctor_runner import PRIVILEGES_TITLE, Check, CheckRunner
from tickstockpl.errors import AuditConfigError, TickStockPLError
from tickstockpl.settings import AUDIT_ROLE
from tickstockpl.stores import PgConnection, postgres_connection


class PostgresChecks(CheckRunner):
    """The checks that read the audit database as our role (and the flows as the read role)."""

    def check_postgres(self, check: Check) -> Check:
        target = self.settings.postgres_target
        if not self.settings.audit_enabled:
            return check.skipped("audit disabled (TICKSTOCKPL_AUDIT_ENABLED=0): no rows are written")
        try:
            self.conn = postgres_connection(self.settings)
        except AuditConfigError as exc:
            return check.failed(
                f"{target}: {exc}",
                "check POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB (or DATABASE_URI); as a superuser: "
                f"ALTER ROLE {self.settings.postgres_user} LOGIN PASSWORD '...'",
            )
        except TickStockPLError as exc:
            return check.failed(
                f"{target}: {exc}",
                "start PostgreSQL, or set POSTGRES_HOST/POSTGRES_PORT (the consumer's default moved "
                "from 5433 to 5432 at 7f70b87)",
            )
        with self.conn.cursor() as cursor:
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0]  # type: ignore[index]
        return check.passed(f"{target}: PostgreSQL {version}", target=target, version=version)

    @property
    def init_hint(self) -> str:
        return (
            f"apply db/init.sql as a superuser: psql -d {self.settings.postgres_db} -f db/init.sql "
            "(TickStockAppV2 dropped it at 539232d; TICKSTOCKPL_AUDIT_ENABLED=0 runs without the audit)"
        )

    def schema_checks(self) -> None:
        init_hint = self.init_hint
        user = self.settings.postgres_user
        if self.conn is None:
            why = "audit disabled" if not self.settings.audit_enabled else "PostgreSQL unreachable"
            for name, title in (
                ("schema", "integration_events table, INSERT granted"),
                ("function", "log_integration_event present, EXECUTE granted"),
                ("sequence", "sequence grant (USAGE on integration_events_id_seq)"),
                ("audit_call", "an audit row is accepted (probe, rolled back)"),
                ("duplicate_check", "the relay's duplicate check is allowed"),
            ):
                self.checks.append(Check(name, title, True).skipped(why))
            self.deferred.append(("privileges", PRIVILEGES_TITLE, False, lambda check: check.skipped(why)))
            return
        with self.conn.cursor() as cursor:
            status = health.schema_status(cursor)
        self.can_select = status.can_select
        self.status = status

        def table(check: Check) -> Check:
            if not status.table:
                return check.failed("integration_events does not exist", init_hint)
            if not status.can_insert:
                return check.failed(
                    f"{user} may not INSERT into integration_events",
                    f"GRANT INSERT ON integration_events TO {user}",
                )
            view = "present" if status.view else "missing (the consumer's monitor needs it)"
            return check.passed(f"present, INSERT granted; pattern_flow_analysis {view}", view=status.view)

        def function(check: Check) -> Check:
            if not status.function:
                return check.failed("log_integration_event(uuid, varchar, ...) does not exist", init_hint)
            if not status.can_execute:
                return check.failed(
                    f"{user} may not EXECUTE log_integration_event",
                    f"GRANT EXECUTE ON FUNCTION log_integration_event TO {user}",
                )
            return check.passed("present, EXECUTE granted")

        def sequence(check: Check) -> Check:
            if status.sequence is None:
                return check.skipped("no table, so no sequence")
            if not status.can_use_sequence:
                return check.failed(
                    f"{user} lacks USAGE on {status.sequence}: every call fails with "
                    f'"permission denied for sequence"',
                    f"GRANT USAGE, SELECT ON SEQUENCE {status.sequence} TO {user} "
                    "(the consumer's script forgets it; contract §4.3)",
                )
            return check.passed(f"USAGE on {status.sequence} granted", sequence=status.sequence)

        def audit_call(check: Check) -> Check:
            assert self.conn is not None
            try:
                health.probe_audit_call(self.conn)
            except AuditConfigError as exc:
                return check.failed(str(exc), "fix the failing check above; then re-run doctor")
            return check.passed("log_integration_event accepted a heartbeat row (rolled back)")

        self.add("schema", "integration_events table, INSERT granted", True, table)
        self.add("function", "log_integration_event present, EXECUTE granted", True, function)
        self.add("sequence", "sequence grant (USAGE on integration_events_id_seq)", True, sequence)
        self.add("audit_call", "an audit row is accepted (probe, rolled back)", True, audit_call)
        self.add("duplicate_check", "the relay's duplicate check is allowed", True, self.check_duplicate)
        self.deferred.append(("privileges", PRIVILEGES_TITLE, False, self.check_privileges))

    def check_duplicate(self, check: Check) -> Check:
        """The relay skips flows already audited: allowed through the definer function or SELECT."""
        status, user = self.status, self.settings.postgres_user
        assert status is not None
        if status.log_new_callable:
            return check.passed("through tickstockpl_log_new (SECURITY DEFINER): no SELECT needed")
        if status.can_select:
            return check.passed(f"inline: {user} may SELECT integration_events", inline=True)
        return check.failed(
            f"{user} may neither EXECUTE tickstockpl_log_new nor SELECT integration_events: the "
            "relay's duplicate check is refused and every row goes to the audit backlog",
            f"{self.init_hint}; it creates tickstockpl_log_new and grants it to {AUDIT_ROLE}",
        )

    def check_privileges(self, check: Check) -> Check:
        """Which setup this is: the write-only audit role, or a role that can erase the trail."""
        status, user = self.status, self.settings.postgres_user
        assert status is not None
        erase = status.can_erase
        data = {"can_erase": list(erase), "can_select": status.can_select, "role": user}
        if erase:
            return check.failed(
                f"{user} may {', '.join(erase)} integration_events: the weaker shared setup, in "
                "which whoever holds this password can rewrite or erase the audit trail",
                f"run the services as the write-only {AUDIT_ROLE}: make up does "
                "(TICKSTOCKPL_DB_ROLES=least); attached to a database, apply db/init.sql as a superuser "
                f"and set POSTGRES_USER={AUDIT_ROLE} (docs/stack.md, Least privilege)",
                **data,
            )
        reads = "reads nothing" if not status.can_select else "may SELECT (reads, cannot change)"
        return check.passed(f"least privilege: {user} writes audit rows only, {reads}", **data)

    def flow_checks(self) -> None:
        titles = {
            "recent_patterns": "recent PATTERN_PUBLISHED rows",
            "consumer_flows": "flows completed by the consumer (EVENT_RECEIVED, EVENT_PARSED)",
            "orphans": "no orphan flows",
        }
        reader = self._reader()
        if reader is None:
            why = (
                "PostgreSQL unreachable"
                if self.conn is None
                else f"{self.settings.postgres_user} cannot read integration_events (needs SELECT, or "
                "POSTGRES_READ_PASSWORD for the read role)"
            )
            for name, title in titles.items():
                self.checks.append(Check(name, title, False).skipped(why))
            return
        try:
            with reader.cursor() as cursor:
                flows = health.flow_stats(
                    cursor, window_s=self.args.window, orphan_grace_s=self.args.orphan_grace
                )
        finally:
            if reader is not self.conn:
                reader.close()
        data = asdict(flows)
        window = f"in the last {self.args.window / 60:g} min"

        def recent(check: Check) -> Check:
            if flows.published == 0:
                return check.failed(
                    f"no PATTERN_PUBLISHED rows {window}",
                    "is the stack running (detector, relay)? `tickstockpl publish-test` sends one",
                    **data,
                )
            age = flows.last_published_age_s or 0.0
            return check.passed(f"{flows.published} flows {window}, the newest {age:.0f} s ago", **data)

        def completed(check: Check) -> Check:
            if flows.published == 0:
                return check.skipped("no flows to judge")
            if flows.completed == 0:
                return check.failed(
                    f"none of {flows.published} flows has EVENT_RECEIVED and EVENT_PARSED",
                    "TickStockAppV2 writes them only at 30aa1ba-7f70b87 (not from 539232d), against this "
                    "database; check that it runs and that its inserts succeed",
                    **data,
                )
            latency = ""
            if flows.p50_ms is not None and flows.p95_ms is not None:
                latency = f"; latency p50 {flows.p50_ms:.1f} ms, p95 {flows.p95_ms:.1f} ms"
            return check.passed(f"{flows.completed} of {flows.published} completed{latency}", **data)

        def orphans(check: Check) -> Check:
            if flows.orphans:
                return check.failed(
                    f"{flows.orphans} published flows {window} have no EVENT_RECEIVED or EVENT_PARSED row",
                    "the consumer missed them: not subscribed at the time, or its inserts failed "
                    "(non-UUID flow_id, confidence >= 9.995, its sequence grant); see its log",
                    **data,
                )
            return check.passed(f"0 orphans among {flows.published} flows", **data)

        self.add("recent_patterns", titles["recent_patterns"], False, recent)
        self.add("consumer_flows", titles["consumer_flows"], False, completed)
        self.add("orphans", titles["orphans"], False, orphans)

    def _reader(self) -> PgConnection | None:
        """A connection that may read the flows: the read role's when its password is known (the
        audit role may not SELECT), else ours if it can; None when neither."""
        if self.conn is None:
            return None
        reading = self.settings.for_reading()
        if reading is not self.settings:
            try:
                return postgres_connection(reading)
            except TickStockPLError:
                pass  # fall back to our own connection, which may read
        return self.conn if self.can_select else None
