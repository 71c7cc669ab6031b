"""The origin error store (edge/errors.py): bounded in memory per tunnel, per organisation and in all, with what is
left out counted on a row; written in one batch; pruned per tunnel and by age; one tenant's flood costs only its
own rows."""

from __future__ import annotations

import datetime
import uuid

import pytest
from django.utils import timezone

from controlplane.actors import Actor
from edge import errors
from edge.errors import OriginErrorRecorder, write_batch
from tunnels.models import OriginError
from tunnels.services import tunnel_create

pytestmark = [pytest.mark.django_db]


def record(recorder, tunnel, n=1, status=502, reason="connection refused by 10.0.0.5:8080"):
    return [
        recorder.record(
            organisation_id=tunnel.organisation_id,
            tunnel_id=tunnel.pk,
            request_id=f"{uuid.uuid4().hex[:16]}-test",
            hostname="app.example.com",
            status=status,
            reason=reason,
            method="GET",
            path="/x",
        )
        for _ in range(n)
    ]


def rows(tunnel):
    return list(OriginError.objects.for_org(tunnel.organisation).filter(tunnel=tunnel))


def test_a_flood_from_one_tunnel_is_bounded_and_counted_and_leaves_room_for_others(org_a, org_b):
    flood = tunnel_create(organisation=org_a, name="flood", actor=Actor.cli())
    quiet = tunnel_create(organisation=org_b, name="quiet", actor=Actor.cli())
    recorder = OriginErrorRecorder()
    kept = record(recorder, flood, 1000)
    assert kept.count(True) == errors.PENDING_PER_TUNNEL and kept.count(False) == 1000 - errors.PENDING_PER_TUNNEL
    assert record(recorder, quiet, 3) == [True] * 3  # another tenant's errors still get in
    write_batch(recorder.take(), "test-server")
    flooded = rows(flood)
    assert len(flooded) == errors.PENDING_PER_TUNNEL
    assert sorted(row.unrecorded for row in flooded) == [0] * (errors.PENDING_PER_TUNNEL - 1) + [980]
    assert flooded[0].unrecorded == 980  # on the newest row, which the page shows first
    assert [row.unrecorded for row in rows(quiet)] == [0, 0, 0]
    assert recorder.stats() == {"pending": 0, "recorded": 0, "dropped": 980}
    # The bounds start over with the next batch.
    assert record(recorder, flood, 1) == [True]


def test_one_organisation_with_many_tunnels_is_bounded_as_a_whole(org_a, org_b, monkeypatch):
    monkeypatch.setattr(errors, "PENDING_PER_ORGANISATION", 5)
    monkeypatch.setattr(errors, "PENDING_TOTAL", 8)
    recorder = OriginErrorRecorder()
    many = [tunnel_create(organisation=org_a, name=f"t{i}", actor=Actor.cli()) for i in range(4)]
    other = tunnel_create(organisation=org_b, name="other", actor=Actor.cli())
    assert [record(recorder, tunnel, 2) for tunnel in many] == [[True, True], [True, True], [True, False], [False] * 2]
    assert record(recorder, other, 4) == [True, True, True, False]  # the global bound
    assert len(recorder.pending) == 8
    # What a tunnel lost while it had no row in the batch waits for its next row.
    write_batch(recorder.take(), "s")
    assert rows(many[3]) == []
    record(recorder, many[3])
    write_batch(recorder.take(), "s")
    assert [row.unrecorded for row in rows(many[3])] == [2]


def test_rows_are_pruned_to_the_newest_per_tunnel_and_by_age(org_a, monkeypatch):
    monkeypatch.setattr(errors, "KEEP_PER_TUNNEL", 5)
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    recorder = OriginErrorRecorder()
    for batch in range(3):
        record(recorder, tunnel, 4, reason=f"batch {batch}")
        write_batch(recorder.take(), "s")
    kept = rows(tunnel)
    assert [row.reason for row in kept] == ["batch 2"] * 4 + ["batch 1"]
    OriginError.objects.for_org(org_a).filter(pk=kept[0].pk).update(
        occurred_at=timezone.now() - errors.MAX_AGE - datetime.timedelta(minutes=1)
    )
    write_batch([], "s", prune=True)
    assert len(rows(tunnel)) == 4


def test_a_process_trims_a_tunnel_once_it_wrote_trim_every_rows_of_it(org_a, monkeypatch):
    """Trimming on every flush would cost two queries per failing tunnel per second."""
    monkeypatch.setattr(errors, "KEEP_PER_TUNNEL", 5)
    monkeypatch.setattr(errors, "TRIM_EVERY", 10)
    busy = tunnel_create(organisation=org_a, name="busy", actor=Actor.cli())
    rare = tunnel_create(organisation=org_a, name="rare", actor=Actor.cli())
    recorder = OriginErrorRecorder()
    kept = []
    for written in range(1, 5):
        record(recorder, busy, 4)
        record(recorder, rare, 1)
        batch = recorder.take()
        write_batch(batch, "s", trim=recorder.due_for_trim(batch))
        assert len(rows(rare)) == written  # never due
        kept.append(len(rows(busy)))
    # Its 10th row came in the third batch: trimmed to 5 then, not before; the fourth batch adds to those.
    assert kept == [4, 8, 5, 9]
    # The bound: at most KEEP_PER_TUNNEL + TRIM_EVERY rows per process.
    assert len(rows(busy)) <= 5 + 10


def test_errors_of_a_tunnel_deleted_meanwhile_do_not_lose_the_batch(org_a):
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    gone = tunnel_create(organisation=org_a, name="gone", actor=Actor.cli())
    recorder = OriginErrorRecorder()
    record(recorder, tunnel)
    record(recorder, gone)
    batch = recorder.take()
    gone.delete()
    assert write_batch(batch, "s") == 1
    assert len(rows(tunnel)) == 1


def test_long_inputs_are_cut_to_the_columns(org_a):
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    recorder = OriginErrorRecorder()
    recorder.record(
        organisation_id=org_a.pk,
        tunnel_id=tunnel.pk,
        request_id="r" * 500,
        hostname="h" * 500,
        status=502,
        reason="x" * 50_000,
        method="M" * 100,
        path="/" + "p" * 10_000,
    )
    write_batch(recorder.take(), "s")
    [row] = rows(tunnel)
    assert (len(row.request_id), len(row.hostname), len(row.reason), len(row.method), len(row.path)) == (
        64,
        255,
        errors.REASON_MAX,
        16,
        errors.PATH_MAX,
    )
