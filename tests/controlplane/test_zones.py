"""Zones: name rules, one owner per name across organisations, and DNS TXT verification against a real DNS
server started by the test."""

from __future__ import annotations

import socket
import threading
from io import StringIO

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management import call_command

from controlplane.actors import Actor
from controlplane.choices import ZoneStatus
from controlplane.models import AuditEvent, Zone
from controlplane.services.zones import (
    clean_zone_name,
    parse_nameserver,
    zone_check_verification,
    zone_create,
    zone_delete,
    zone_mark_verified,
)
from tests.factories import OrganisationFactory

CLI = Actor.cli()


class TxtServer:
    """A tiny authoritative DNS server on UDP: answers TXT for the names in `records`, NXDOMAIN otherwise."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.records: dict[str, list[str]] = {}
        self.queries: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> TxtServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, address = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True).lower()
            self.queries.append(name)
            if name not in self.records:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.TXT and self.records[name]:
                quoted = ['"' + value.replace('"', '\\"') + '"' for value in self.records[name]]
                response.answer.append(
                    dns.rrset.from_text_list(question.name, 60, dns.rdataclass.IN, dns.rdatatype.TXT, quoted)
                )
            self.sock.sendto(response.to_wire(), address)


@pytest.fixture
def dns_server(settings):
    server = TxtServer().start()
    settings.ZONE_VERIFICATION_NAMESERVERS = [f"127.0.0.1:{server.port}"]
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def org_c(db):
    return OrganisationFactory(team_name="charlie")


# names


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("example.com", "example.com"),
        ("  Example.COM. ", "example.com"),
        ("app.example.co.uk", "app.example.co.uk"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.Example.", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a-b.example.com", "a-b.example.com"),
    ],
)
def test_zone_names_are_normalised(org_a, given, stored):
    zone = zone_create(organisation=org_a, name=given, actor=CLI)
    assert zone.name == stored
    assert Zone.objects.for_org(org_a).get().name == stored


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", "Enter a domain name"),
        ("localhost", "not a fully qualified domain name"),
        ("example.com:8443", "cannot contain a port"),
        ("192.168.1.10", "IP addresses are not domain names"),
        ("exa mple.com", "not a valid domain name"),
        ("-bad.example.com", "not a valid domain name"),
        ("bad-.example.com", "not a valid domain name"),
        ("under_score.example.com", "not a valid domain name"),
        ("*.example.com", "not a valid domain name"),
        ("a..example.com", "not a valid domain name"),
        ("x" * 64 + ".example.com", "not a valid domain name"),
        (".".join(["abcdefghij"] * 25) + ".com", "at most 253"),
        ("https://example.com", ""),  # refused; the message speaks of a port
    ],
)
def test_invalid_zone_names_are_refused(org_a, given, message):
    with pytest.raises(ValidationError) as excinfo:
        zone_create(organisation=org_a, name=given, actor=CLI)
    assert "name" in excinfo.value.message_dict
    assert message in " ".join(excinfo.value.message_dict["name"])
    assert not Zone.objects.for_org(org_a).exists()
    assert not AuditEvent.objects.for_org(org_a).exists()


def test_clean_zone_name_reports_errors_on_the_name_field():
    with pytest.raises(ValidationError) as excinfo:
        clean_zone_name("not a name")
    assert list(excinfo.value.message_dict) == ["name"]


# one owner per name


@pytest.mark.parametrize(("first", "second"), [("example.com", "app.example.com"), ("app.example.com", "example.com")])
def test_overlapping_zones_across_organisations_are_refused_naming_the_conflict(org_a, org_b, first, second):
    zone_create(organisation=org_a, name=first, actor=CLI)
    with pytest.raises(ValidationError) as excinfo:
        zone_create(organisation=org_b, name=second, actor=CLI)
    message = " ".join(excinfo.value.message_dict["name"])
    assert first in message and "another organisation" in message
    assert "alpha" not in message.lower(), "the other tenant is not named"
    assert not Zone.objects.for_org(org_b).exists()


def test_deeper_overlaps_and_the_same_name_across_organisations_are_refused(org_a, org_b):
    zone_create(organisation=org_a, name="corp.example.com", actor=CLI)
    for name in ["corp.example.com", "CORP.example.com.", "a.b.corp.example.com", "example.com"]:
        with pytest.raises(ValidationError, match="corp.example.com"):
            zone_create(organisation=org_b, name=name, actor=CLI)


def test_a_name_that_merely_ends_with_another_zone_is_not_an_overlap(org_a, org_b):
    zone_create(organisation=org_a, name="example.com", actor=CLI)
    zone_create(organisation=org_b, name="notexample.com", actor=CLI)
    zone_create(organisation=org_b, name="example.co", actor=CLI)
    zone_create(organisation=org_b, name="com.example", actor=CLI)
    assert Zone.objects.for_org(org_b).count() == 3


def test_same_organisation_duplicates_are_refused_with_their_relation(org_a):
    zone_create(organisation=org_a, name="example.com", actor=CLI)
    with pytest.raises(ValidationError, match="Your zone example.com is example.com already"):
        zone_create(organisation=org_a, name="Example.com.", actor=CLI)
    with pytest.raises(ValidationError, match="Your zone example.com covers app.example.com already"):
        zone_create(organisation=org_a, name="app.example.com", actor=CLI)


def test_a_deleted_zone_frees_its_name(org_a, org_b):
    zone = zone_create(organisation=org_a, name="example.com", actor=CLI)
    zone_delete(zone=zone, actor=CLI)
    zone_create(organisation=org_b, name="app.example.com", actor=CLI)
    events = AuditEvent.objects.for_org(org_a).order_by("created_at")
    assert [(e.action, e.resource_name) for e in events] == [("create", "example.com"), ("delete", "example.com")]


# verification


def test_new_zones_are_pending_with_a_verification_record(org_a, settings):
    settings.ZONE_VERIFICATION_PREFIX = "_zt-verify"
    zone = zone_create(organisation=org_a, name="example.com", actor=CLI)
    assert zone.status == ZoneStatus.PENDING and zone.verified_at is None
    assert zone.verification_record_name == "_zt-verify.example.com"
    assert zone.verification_record_value == f"zt-verify={zone.verification_token}"
    assert len(zone.verification_token) == 32
    event = AuditEvent.objects.for_org(org_a).get()
    assert (event.resource_type, event.action, event.changes) == (
        "zone",
        "create",
        {"name": [None, "example.com"], "status": [None, "pending"]},
    )


def test_zones_auto_verify_activates_new_zones(org_a, settings):
    settings.ZONES_AUTO_VERIFY = True
    zone = zone_create(organisation=org_a, name="example.com", actor=CLI)
    assert zone.status == ZoneStatus.ACTIVE and zone.verified_at is not None
    assert AuditEvent.objects.for_org(org_a).get().changes["status"] == [None, "active"]


def test_a_matching_txt_record_activates_the_zone(org_a, dns_server):
    zone = zone_create(organisation=org_a, name="example.com", actor=CLI)
    dns_server.records["_zt-verify.example.com"] = ["some-other-record", zone.verification_record_value]

    zone = zone_check_verification(zone=zone, actor=CLI)

    assert dns_server.queries == ["_zt-verify.example.com"]
    assert zone.status == ZoneStatus.ACTIVE
    assert zone.verified_at is not None and zone.last_checked_at is not None and zone.last_check_error == ""
    update = AuditEvent.objects.for_org(org_a).filter(action="update").get()
    assert update.changes == {"status": ["pending", "active"]}


def test_a_wrong_txt_value_leaves_the_zone_pending_with_the_reason(org_a, dns_server):
    zone = zone_create(organisation=org_a, name="example.com", actor=CLI)
    dns_server.records["_zt-verify.example.com"] = ["zt-verify=not-the-token"]

    zone = zone_check_verification(zone=zone, actor=CLI)

    assert zone.status == ZoneStatus.PENDING
    assert zone.last_checked_at is not None
    assert "zt-verify=not-the-token" in zone.last_check_error
    assert zone.verification_record_value in zone.last_check_error
    assert not AuditEvent.objects.for_org(org_a).filter(action="update").exists()


def test_a_missing_record_leaves_the_zone_pending(org_a, dns_server):
    zone = zone_create(organisation=org_a, name="example.com", actor=CLI)
    zone = zone_check_verification(zone=zone, actor=CLI)
    assert zone.status == ZoneStatus.PENDING
    assert zone.last_check_error == "No TXT record exists at _zt-verify.example.com."

    dns_server.records["_zt-verify.example.com"] = []  # the name exists, without TXT
    zone = zone_check_verification(zone=zone, actor=CLI)
    assert zone.status == ZoneStatus.PENDING
    assert zone.last_check_error == "_zt-verify.example.com has no TXT record."


def test_an_unreachable_nameserver_leaves_the_zone_pending_with_a_retry_hint(org_a, settings):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        settings.ZONE_VERIFICATION_NAMESERVERS = [f"127.0.0.1:{sock.getsockname()[1]}"]  # bound, never answers
        zone = zone_create(organisation=org_a, name="example.com", actor=CLI)
        zone = zone_check_verification(zone=zone, actor=CLI)
    assert zone.status == ZoneStatus.PENDING
    assert "DNS lookup of _zt-verify.example.com failed" in zone.last_check_error


def test_the_verification_prefix_is_configurable(org_a, dns_server, settings):
    settings.ZONE_VERIFICATION_PREFIX = "_ownership"
    zone = zone_create(organisation=org_a, name="example.com", actor=CLI)
    dns_server.records["_ownership.example.com"] = [zone.verification_record_value]
    assert zone_check_verification(zone=zone, actor=CLI).status == ZoneStatus.ACTIVE


def test_an_ipv6_nameserver_with_a_port(org_a, settings):
    try:
        server = TxtServer("::1").start()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    try:
        settings.ZONE_VERIFICATION_NAMESERVERS = [f"[::1]:{server.port}"]
        zone = zone_create(organisation=org_a, name="example.com", actor=CLI)
        server.records["_zt-verify.example.com"] = [zone.verification_record_value]
        assert zone_check_verification(zone=zone, actor=CLI).status == ZoneStatus.ACTIVE
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("entry", "parsed"),
    [
        ("192.0.2.1", ("192.0.2.1", 53)),
        ("192.0.2.1:5353", ("192.0.2.1", 5353)),
        (" 2001:db8::1 ", ("2001:db8::1", 53)),
        ("[2001:db8::1]:5353", ("2001:db8::1", 5353)),
        ("[2001:db8::1]", ("2001:db8::1", 53)),
    ],
)
def test_nameserver_entries(entry, parsed):
    assert parse_nameserver(entry) == parsed


@pytest.mark.parametrize("entry", ["ns1.example.com", "192.0.2.1:dns", "192.0.2.1:70000", "[2001:db8::1]5353", ""])
def test_invalid_nameserver_entries_fail_clearly(entry):
    with pytest.raises(ImproperlyConfigured, match="ZONE_VERIFICATION_NAMESERVERS"):
        parse_nameserver(entry)


def test_checking_an_active_zone_does_nothing(org_a, dns_server, settings):
    settings.ZONES_AUTO_VERIFY = True
    zone = zone_create(organisation=org_a, name="example.com", actor=CLI)
    assert zone_check_verification(zone=zone, actor=CLI).status == ZoneStatus.ACTIVE
    assert dns_server.queries == []


def test_marking_verified_twice_writes_one_audit_event(org_a):
    zone = zone_create(organisation=org_a, name="example.com", actor=CLI)
    zone_mark_verified(zone=zone, actor=CLI)
    zone_mark_verified(zone=zone, actor=CLI)
    assert zone.status == ZoneStatus.ACTIVE
    assert AuditEvent.objects.for_org(org_a).filter(action="update").count() == 1


def test_check_zones_command_verifies_pending_zones_through_dns(org_a, org_b, dns_server):
    good = zone_create(organisation=org_a, name="good.example", actor=CLI)
    bad = zone_create(organisation=org_b, name="bad.example", actor=CLI)
    dns_server.records["_zt-verify.good.example"] = [good.verification_record_value]

    out = StringIO()
    call_command("check_zones", stdout=out)

    good.refresh_from_db()
    bad.refresh_from_db()
    assert good.status == ZoneStatus.ACTIVE and bad.status == ZoneStatus.PENDING
    assert "good.example: verified" in out.getvalue()
    assert "bad.example: pending — No TXT record exists" in out.getvalue()
    audit = AuditEvent.objects.for_org(org_a).filter(action="update").get()
    assert audit.interface == "cli"


def test_the_periodic_task_rechecks_pending_zones_not_checked_recently(org_a, org_b, dns_server):
    from django.utils import timezone

    from controlplane.tasks import check_pending_zones

    published = zone_create(organisation=org_a, name="published.example", actor=CLI)
    unpublished = zone_create(organisation=org_b, name="unpublished.example", actor=CLI)
    recent = zone_create(organisation=org_b, name="recent.example", actor=CLI)
    Zone.objects.for_org(org_b).filter(pk=recent.pk).update(last_checked_at=timezone.now())
    dns_server.records["_zt-verify.published.example"] = [published.verification_record_value]
    dns_server.records["_zt-verify.recent.example"] = [recent.verification_record_value]

    assert check_pending_zones.apply().get() == {"checked": 2, "verified": 1}  # run here, as a worker would

    statuses = dict(Zone.objects.unscoped("test").values_list("name", "status"))
    assert statuses == {"published.example": "active", "unpublished.example": "pending", "recent.example": "pending"}
    assert sorted(dns_server.queries) == ["_zt-verify.published.example", "_zt-verify.unpublished.example"]
    unpublished.refresh_from_db()
    assert unpublished.last_check_error.startswith("No TXT record")
    event = AuditEvent.objects.for_org(org_a).filter(action="update").get()
    assert (event.actor_type, event.interface, event.user_agent) == ("system", "system", "zone verification")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name", ["access.localhost", "team.access.localhost", "cfargotunnel.localhost", "x.cfargotunnel.localhost"]
)
def test_the_installations_own_domains_cannot_be_claimed(org_a, name):
    from controlplane.actors import Actor
    from controlplane.services.zones import zone_create

    with pytest.raises(ValidationError, match="this installation uses itself"):
        zone_create(organisation=org_a, name=name, actor=Actor.cli())


@pytest.mark.django_db
def test_the_control_plane_host_cannot_be_routed(org_a, settings):
    from controlplane.actors import Actor
    from controlplane.services.dns import dns_record_create
    from controlplane.services.zones import zone_create

    settings.CONTROL_PLANE_HOSTS = ["zt.example.org"]
    zone = zone_create(organisation=org_a, name="example.org", actor=Actor.cli())
    with pytest.raises(ValidationError, match="control plane's own address"):
        dns_record_create(zone=zone, actor=Actor.cli(), type="A", name="zt", content="192.0.2.1")
