"""Origin errors: what the edge did not tell a visitor, kept for the tunnel's members.

A visitor's error page names only the status, a plain sentence and the request id (edge/pages.py). The reason
(the origin's address, a TLS failure, the connector's words) is recorded here by the edge process that answered,
and shown on the tunnel's page in the dashboard ("Recent origin errors", searchable by request id), so that an
administrator handed a request id finds the cause. With several edge processes each records what it saw into the
same table; nothing about it lives only in one process's memory for longer than one flush. After each write the
rows are announced on the hub (`OriginErrorsRecorded`, one event per tunnel of the batch, so at most PENDING_TOTAL
rows a second per process cross the channel layer), so the tunnel's open pages list them without a reload.

Cost and bounds: nothing runs for a successful request. An error appends to an in-memory batch (no await, no
database); one task per process writes the batch every FLUSH_INTERVAL in one transaction on the hub's database
threads. The batch is bounded per tunnel, per organisation and in all, so that a flood of errors from one tenant
costs that tenant's rows only: what is over a bound is counted and the count is written on a row of its tunnel
(`unrecorded`). Rows are pruned to the newest KEEP_PER_TUNNEL per tunnel (checked every TRIM_EVERY rows a process
writes of it) and to MAX_AGE."""

from __future__ import annotations

import asyncio
import datetime
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections, transaction
from django.utils import timezone

from tunnels.choices import ORIGIN_ERROR_MAX_AGE

logger = logging.getLogger("edge")

FLUSH_INTERVAL = 1.0  # seconds between writes (at most one transaction per interval per process)
PENDING_PER_TUNNEL = 20  # rows of one tunnel per flush; more are counted, not kept
PENDING_PER_ORGANISATION = 60  # rows of one organisation per flush
PENDING_TOTAL = 500  # rows per flush in all
KEEP_PER_TUNNEL = 200  # rows kept per tunnel (the newest)
TRIM_EVERY = 50  # a process trims a tunnel's rows once it has written this many since it last did
MAX_AGE = ORIGIN_ERROR_MAX_AGE  # older rows are deleted, and never shown
PRUNE_EVERY = datetime.timedelta(minutes=10)  # how often a process deletes rows past MAX_AGE
REASON_MAX = 1000
PATH_MAX = 512


@dataclass(slots=True)
class PendingError:
    organisation_id: uuid.UUID
    tunnel_id: uuid.UUID
    occurred_at: datetime.datetime
    request_id: str
    hostname: str
    method: str
    path: str
    status: int
    reason: str
    unrecorded: int = 0


class OriginErrorRecorder:
    """One per process (`recorder`). `record()` is synchronous and bounded; `flush()` writes what is pending."""

    def __init__(self) -> None:
        self.pending: list[PendingError] = []
        self._per_tunnel: dict[uuid.UUID, int] = {}
        self._per_org: dict[uuid.UUID, int] = {}
        # (organisation, tunnel) -> errors left out and not yet written on a row of that tunnel. Bounded by the
        # number of tunnels routed here: one entry per tunnel at most.
        self.unrecorded: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
        self.recorded_total = 0
        self.dropped_total = 0
        # (organisation, tunnel) -> rows this process wrote since it last trimmed the tunnel (at most one per tunnel).
        self._since_trim: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
        self._task: asyncio.Future | None = None
        self._last_prune: datetime.datetime | None = None

    def record(
        self,
        *,
        organisation_id: uuid.UUID,
        tunnel_id: uuid.UUID,
        request_id: str,
        hostname: str,
        status: int,
        reason: str,
        method: str = "",
        path: str = "",
    ) -> bool:
        """Queue one error for the next flush; False when a bound left it out (it is counted instead)."""
        per_tunnel = self._per_tunnel.get(tunnel_id, 0)
        per_org = self._per_org.get(organisation_id, 0)
        full = len(self.pending) >= PENDING_TOTAL
        if full or per_tunnel >= PENDING_PER_TUNNEL or per_org >= PENDING_PER_ORGANISATION:
            key = (organisation_id, tunnel_id)
            self.unrecorded[key] = self.unrecorded.get(key, 0) + 1
            self.dropped_total += 1
            return False
        self._per_tunnel[tunnel_id] = per_tunnel + 1
        self._per_org[organisation_id] = per_org + 1
        self.pending.append(
            PendingError(
                organisation_id=organisation_id,
                tunnel_id=tunnel_id,
                occurred_at=timezone.now(),
                request_id=request_id[:64],
                hostname=hostname[:255],
                method=method[:16],
                path=path[:PATH_MAX],
                status=status,
                reason=(reason or "no reason given")[:REASON_MAX],
            )
        )
        self._schedule()
        return True

    def _schedule(self) -> None:
        task = self._task
        if task is not None and not task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): the next error recorded from the loop flushes this one too
        self._task = loop.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(FLUSH_INTERVAL)
        try:
            await self.flush()
        except Exception:
            logger.exception("writing origin errors failed; they are lost (the edge log has each of them)")

    def take(self) -> list[PendingError]:
        """The pending batch, with each tunnel's left-out count on its newest row; the bounds start over."""
        batch, self.pending = self.pending, []
        self._per_tunnel.clear()
        self._per_org.clear()
        if self.unrecorded and batch:
            newest: dict[tuple[uuid.UUID, uuid.UUID], PendingError] = {}
            for row in batch:
                newest[(row.organisation_id, row.tunnel_id)] = row
            for key, row in newest.items():
                count = self.unrecorded.pop(key, 0)
                if count:
                    row.unrecorded = count
        return batch

    def due_for_trim(self, batch: list[PendingError]) -> set[tuple[uuid.UUID, uuid.UUID]]:
        """The tunnels of the batch whose rows should be trimmed now: trimming every tunnel on every flush would
        cost two queries per tunnel per second when many fail at once, so each is trimmed once this process has
        written TRIM_EVERY rows of it (a tunnel keeps at most KEEP_PER_TUNNEL + TRIM_EVERY per process)."""
        due = set()
        for row in batch:
            key = (row.organisation_id, row.tunnel_id)
            count = self._since_trim.get(key, 0) + 1
            if count >= TRIM_EVERY:
                due.add(key)
                count = 0
            self._since_trim[key] = count
        return due

    async def flush(self) -> None:
        batch = self.take()
        prune = self._last_prune is None or timezone.now() - self._last_prune > PRUNE_EVERY
        if not batch and not prune:
            return
        from dataplane.hub import get_hub

        hub = get_hub()
        written = await hub.db(_write_from_thread, batch, hub.server_id, prune, self.due_for_trim(batch))
        if prune:
            self._last_prune = timezone.now()
        self.recorded_total += len(batch)
        for event in _announcements(written):
            await hub.announce(event)

    def stats(self) -> dict[str, Any]:
        return {"pending": len(self.pending), "recorded": self.recorded_total, "dropped": self.dropped_total}


recorder = OriginErrorRecorder()


def _write_from_thread(
    batch: list[PendingError], server_id: str, prune: bool, trim: set[tuple[uuid.UUID, uuid.UUID]]
) -> list[Any]:
    close_old_connections()
    try:
        return write_rows(batch, server_id, prune=prune, trim=trim)
    finally:
        close_old_connections()


def _announcements(rows: list[Any]) -> list[Any]:
    """One event per tunnel of the rows written, each row as the page and the API show it."""
    from tunnels.events import OriginErrorsRecorded
    from tunnels.live import origin_error_json

    by_tunnel: dict[tuple[uuid.UUID, uuid.UUID], list[dict[str, Any]]] = {}
    for row in rows:
        by_tunnel.setdefault((row.organisation_id, row.tunnel_id), []).append(origin_error_json(row))
    return [OriginErrorsRecorded(org, tunnel, errors=tuple(errors)) for (org, tunnel), errors in by_tunnel.items()]


def write_batch(
    batch: list[PendingError],
    server_id: str,
    *,
    prune: bool = False,
    trim: set[tuple[uuid.UUID, uuid.UUID]] | None = None,
) -> int:
    """`write_rows`, returning how many rows it wrote."""
    return len(write_rows(batch, server_id, prune=prune, trim=trim))


def write_rows(
    batch: list[PendingError],
    server_id: str,
    *,
    prune: bool = False,
    trim: set[tuple[uuid.UUID, uuid.UUID]] | None = None,
) -> list[Any]:
    """Insert the batch in one transaction, keep the newest KEEP_PER_TUNNEL rows of the (organisation, tunnel)
    pairs in `trim` (by default: every tunnel of the batch), and (with `prune`) delete every organisation's rows
    past MAX_AGE. Returns the OriginError rows written."""
    from tunnels.models import OriginError, Tunnel

    with transaction.atomic():
        rows: list[OriginError] = []
        if batch:
            tunnels = {row.tunnel_id for row in batch}
            # A tunnel removed since the route was loaded would fail the whole insert (foreign key).
            alive = set(
                Tunnel.objects.unscoped("origin errors of every organisation are written in one batch")
                .filter(pk__in=tunnels)
                .values_list("pk", flat=True)
            )
            rows = [
                OriginError(
                    organisation_id=row.organisation_id,
                    tunnel_id=row.tunnel_id,
                    occurred_at=row.occurred_at,
                    request_id=row.request_id,
                    hostname=row.hostname,
                    method=row.method,
                    path=row.path,
                    status=row.status,
                    reason=row.reason,
                    unrecorded=row.unrecorded,
                    server_id=server_id[:64],
                )
                for row in batch
                if row.tunnel_id in alive
            ]
            OriginError.objects.bulk_create(rows)
            touched = {(row.organisation_id, row.tunnel_id) for row in rows}
            for organisation_id, tunnel_id in touched if trim is None else touched & trim:
                _keep_newest(organisation_id, tunnel_id)
        if prune:
            OriginError.objects.unscoped("origin errors of every organisation expire alike").filter(
                occurred_at__lt=timezone.now() - MAX_AGE
            ).delete()
        return rows


def _keep_newest(organisation_id: uuid.UUID, tunnel_id: uuid.UUID) -> None:
    from tunnels.models import OriginError

    rows = OriginError.objects.filter(organisation_id=organisation_id, tunnel_id=tunnel_id)
    # Each process trims a tunnel every TRIM_EVERY rows it writes, so what is beyond the kept ones is small.
    older = list(
        rows.order_by("-occurred_at", "-id").values_list("pk", flat=True)[KEEP_PER_TUNNEL : KEEP_PER_TUNNEL + 1000]
    )
    if older:
        rows.filter(pk__in=older).delete()
