"""The live status feed for browsers, `/ws/accounts/<account_id>/tunnels/status`, as a plain ASGI app: the
organisation's members follow their tunnels' status (a snapshot, then every change the hub's status fan-out sends,
tunnels/fanout.py); the session is checked again at every heartbeat. A tunnel's page adds `?tunnel=<id>` (and its
search, `&request_id=`): the snapshot then carries that tunnel's recent origin errors and new ones follow as the
edge records them."""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from django.conf import settings

from tunnels.fanout import Watcher, status_snapshots
from tunnels.runtime import get_hub
from tunnels.websocket import WebSocket

if TYPE_CHECKING:
    from controlplane.models import Organisation

logger = logging.getLogger("tunnels.connector")


class WatcherCloseCode(enum.IntEnum):
    """Why the status socket of a browser was refused or closed (docs/tunnels.md, "Live status"). The page says
    so, with a link to fix it; it keeps retrying slowly, so fixing it in another tab brings the feed back."""

    SIGNED_OUT = 4401
    FORBIDDEN = 4403  # a member whose role cannot see tunnels
    NOT_FOUND = 4404  # not a member (or no such organisation): existence stays hidden
    SECOND_FACTOR_REQUIRED = 4411


@dataclass(frozen=True)
class WatcherRefusal:
    code: WatcherCloseCode
    reason: str
    fix_url: str = ""
    fix_label: str = ""


def authorise_watcher(user: Any, account_id: str) -> Organisation | WatcherRefusal:
    """The organisation whose tunnels `user` (as resolved by controlplane.second_factor) may watch, or why not.
    The same rule as the tunnel pages: resolve_org_access, then read on tunnels."""
    from django.core.exceptions import PermissionDenied
    from django.http import Http404
    from django.urls import reverse

    from controlplane.access import NotSignedIn, SecondFactorRequired, resolve_org_access
    from controlplane.choices import Level, Resource
    from controlplane.services.auth import user_has_second_factor

    try:
        access = resolve_org_access(user=user, token=None, account_id=account_id)
        access.require(Resource.TUNNELS, Level.READ)
    except NotSignedIn:
        return WatcherRefusal(WatcherCloseCode.SIGNED_OUT, "You are signed out.", reverse("ui:login"), "Sign in")
    except SecondFactorRequired:
        if user_has_second_factor(user):
            fix_url, fix_label = reverse("ui:login-verify"), "Enter your second factor"
        else:
            fix_url, fix_label = reverse("ui:two-factor"), "Set up two-factor authentication"
        return WatcherRefusal(
            WatcherCloseCode.SECOND_FACTOR_REQUIRED,
            "This organisation requires two-factor authentication, and this session has not passed it.",
            fix_url,
            fix_label,
        )
    except Http404:
        return WatcherRefusal(WatcherCloseCode.NOT_FOUND, "No such account, or you are no longer a member.")
    except PermissionDenied as exc:
        return WatcherRefusal(WatcherCloseCode.FORBIDDEN, str(exc) or "You do not have permission to see tunnels.")
    return access.organisation


def reauthorise_watcher(session_key: str | None, account_id: str) -> Organisation | WatcherRefusal:
    """`authorise_watcher` again from the session as stored now: signing out (in another tab), losing the
    membership or the second factor closes an open feed within LIVE_STATUS_RECHECK_SECONDS."""
    from importlib import import_module

    from controlplane.second_factor import user_for_session

    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return authorise_watcher(user_for_session(session), account_id)


async def status_app(scope: dict[str, Any], receive, send) -> None:
    """The live status feed of one organisation: a snapshot, then every change; a heartbeat every
    LIVE_STATUS_RECHECK_SECONDS, each after checking again that the session may still watch."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    account_id = scope["url_route"]["kwargs"]["account_id"]
    outcome = await sync_to_async(authorise_watcher, thread_sensitive=False)(scope.get("user"), account_id)
    # Accepted even when refused: a refusal before the handshake reaches the browser as a bare 1006, and the page
    # must be able to say why.
    await send({"type": "websocket.accept"})
    sock = WebSocket(receive, send)

    async def send_json(payload: dict[str, Any]) -> None:
        await sock.send_text(json.dumps(payload, default=str))

    if isinstance(outcome, WatcherRefusal):
        await _refuse_watcher(sock, send_json, outcome)
        return
    organisation = outcome
    hub = get_hub()
    await hub.ensure_started()
    interval = float(settings.LIVE_STATUS_RECHECK_SECONDS)
    session_key = getattr(scope.get("session"), "session_key", None)
    focus, request_id = _focus(scope)
    watcher = Watcher(organisation_id=organisation.pk, send_json=send_json, tunnel_id=focus, request_id=request_id)
    hub.watch(watcher)
    try:
        from tunnels.models import Tunnel

        ids = await sync_to_async(
            lambda: set(
                Tunnel.objects.for_org(organisation).filter(deleted_at__isnull=True).values_list("pk", flat=True)
            ),
            thread_sensitive=False,
        )()
        snapshots = await hub.db(status_snapshots, organisation.pk, ids)
        snapshot: dict[str, Any] = {"type": "snapshot", "tunnels": snapshots, "heartbeat": interval}
        if focus is not None:
            # Watched from the page of a tunnel that is not (or no longer) the organisation's: no errors, ever.
            errors = await hub.db(_origin_errors, organisation, focus, request_id) if focus in ids else []
            if focus not in ids:
                watcher.tunnel_id = None
            snapshot["origin_errors"] = {"tunnel": str(focus), "request_id": request_id, "errors": errors}
        await send_json(snapshot)
        while True:
            try:
                event = await asyncio.wait_for(receive(), interval)
            except TimeoutError:
                # Not on the hub's executor: a page's recheck must never delay connection bookkeeping.
                outcome = await sync_to_async(reauthorise_watcher, thread_sensitive=False)(session_key, account_id)
                if isinstance(outcome, WatcherRefusal):
                    await _refuse_watcher(sock, send_json, outcome)
                    break
                await send_json({"type": "heartbeat"})
                continue
            if event["type"] == "websocket.disconnect":
                break
    finally:
        hub.unwatch(watcher)


def _focus(scope: dict[str, Any]) -> tuple[uuid.UUID | None, str]:
    """The tunnel whose page opened the feed (`?tunnel=`), and its origin-error search (`&request_id=`)."""
    from tunnels.selectors import clean_request_id

    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    try:
        tunnel_id = uuid.UUID(query["tunnel"][0]) if query.get("tunnel") else None
    except ValueError:
        tunnel_id = None
    return tunnel_id, clean_request_id((query.get("request_id") or [""])[0])


def _origin_errors(organisation: Organisation, tunnel_id: uuid.UUID, request_id: str) -> list[dict[str, Any]]:
    from django.db import close_old_connections

    from tunnels import selectors
    from tunnels.live import origin_error_json

    close_old_connections()
    tunnel = selectors.tunnel_get(organisation=organisation, tunnel_id=tunnel_id)
    return [origin_error_json(row) for row in selectors.origin_error_list(tunnel=tunnel, request_id=request_id)]


async def _refuse_watcher(sock: WebSocket, send_json, refusal: WatcherRefusal) -> None:
    # Some servers (daphne) drop close reasons: the message says it first, the close code says it again.
    await send_json(
        {
            "type": "refused",
            "code": int(refusal.code),
            "reason": refusal.reason,
            "fix_url": refusal.fix_url,
            "fix_label": refusal.fix_label,
        }
    )
    await sock.close(refusal.code, refusal.reason)
