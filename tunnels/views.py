"""The tunnel pages of the team UI. Thin views: forms → services → redirect; live state is rendered in the
browser from the same JSON the status websocket pushes (tunnels/live.py), so page and updates never disagree."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from functools import lru_cache
from html import escape
from operator import itemgetter
from string import Formatter
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.defaultfilters import date as date_filter
from django.template.loader import render_to_string
from django.utils.safestring import SafeString
from django.utils.timezone import get_current_timezone
from django.utils.translation import get_language
from django.views.generic import TemplateView

from controlplane.choices import Level, Resource, ZoneStatus
from controlplane.models import Zone
from controlplane.ui.mixins import OrgRequiredMixin, apply_service_error
from tunnels import selectors, services
from tunnels.forms import (
    DeleteTunnelForm,
    NotificationForm,
    PublicHostnameForm,
    RotateForm,
    TunnelCreateForm,
    TunnelRenameForm,
    setting_words,
)
from tunnels.install import CONNECTOR_VERSION, install_commands, install_warnings, wheel_url
from tunnels.live import tunnel_status_json
from tunnels.models import NotificationDestination, Tunnel


class TunnelPage(OrgRequiredMixin, TemplateView):
    resource = Resource.TUNNELS
    nav = "tunnels"

    def tunnel(self, **kwargs: Any) -> Tunnel:
        return selectors.tunnel_get(organisation=self.organisation, tunnel_id=kwargs["tunnel_id"])

    @property
    def can_edit(self) -> bool:
        return self.access.can(Resource.TUNNELS, Level.EDIT)

    def to_tunnel(self, tunnel: Tunnel, anchor: str = "") -> HttpResponse:
        url = self.org_url("ui:tunnel", tunnel.id.hex)
        return redirect(f"{url}#{anchor}" if anchor else url)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["can_edit"] = self.can_edit
        context["status_socket"] = f"/ws/accounts/{self.organisation.account_id}/tunnels/status"
        return context


TUNNELS_PER_PAGE = 50
# Stands in for a tunnel's id in the one URL the list reverses (a UUID's hex: nothing in it is quoted).
_ID_STAND_IN = "0" * 32
# A row of the tunnel list (tunnels/ui/list.html's table), filled by TunnelListView.rows with escaped values: the
# markup, and the whitespace, of the loop the template ran (~50 µs a row there, a few here). The live status script
# (tunnels/static/tunnels/live.js) fills the cells marked data-tunnel-*.
_ROW = """
      <tr data-tunnel-row="{id}">
        <td><a class="strong" href="{url}">{name}</a><div class="muted small mono">{id}</div></td>
        <td><span data-tunnel-status="{id}"></span><div class="muted small" data-tunnel-explanation="{id}"></div></td>
        <td data-tunnel-connector-count="{id}"></td>
        <td>{routes}</td>
        <td class="nowrap">{created}</td>
      </tr>
    """
_ROUTE = "<div><code>{}</code></div>"
_NO_ROUTE = '<span class="muted">none</span>'


def _positional(template: str) -> tuple[str, Callable[[dict[str, str]], tuple[str, ...]]]:
    """`template` (plain `{name}` fields) as a `%s` string and the function that picks a dict's values in its order:
    `percent % pick(values) == template.format(**values)`, ~3x faster than `format` with keywords."""
    parsed = list(Formatter().parse(template))
    if any(spec or conversion for _, _, spec, conversion in parsed):
        raise ValueError("only plain {name} fields")
    percent = "".join(literal.replace("%", "%%") + ("%s" if name is not None else "") for literal, name, _, _ in parsed)
    return percent, itemgetter(*(name for _, name, _, _ in parsed if name is not None))


_ROW_PERCENT, _ROW_VALUES = _positional(_ROW)


@lru_cache(maxsize=8)
def _empty_name_field(language: str | None) -> SafeString:
    """The create form's name field as ui/includes/field.html draws it for a new, unbound form: the same markup on
    every page (no value, no error), rendered once per process and language rather than through the widget's
    templates on every page (~8 % of the list's CPU; issue 13)."""
    return SafeString(render_to_string("ui/includes/field.html", {"field": TunnelCreateForm()["name"]}))


class TunnelListView(TunnelPage):
    template_name = "tunnels/ui/list.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        # One page at a time, newest first: an organisation with 1,000 tunnels gets a page as fast as one with 10
        # (rendering every row was most of this page's cost: docs/benchmarks.md, "API"). The page's queries are
        # compiled once per process (selectors.tunnel_list_pages; the rows hold its LISTED_FIELDS).
        page = Paginator(selectors.tunnel_list_pages(organisation=self.organisation), TUNNELS_PER_PAGE).get_page(
            self.request.GET.get("page")
        )
        tunnels = list(page.object_list)
        context["page"] = page
        health = selectors.tunnel_health_map(organisation=self.organisation, tunnels=tunnels)
        routes = selectors.tunnel_routes_map(organisation=self.organisation, tunnels=tunnels)
        context["tunnels"] = tunnels
        context["tunnel_rows"] = self.rows(tunnels, routes)
        context["live_tunnels"] = [tunnel_status_json(t, health[t.pk]) for t in tunnels]
        if "form" not in context:  # a new form (a refused one, with its values and errors, is drawn by the template)
            context["form"] = TunnelCreateForm()
            context["empty_name_field"] = _empty_name_field(get_language())
        return context

    def rows(self, tunnels: list[Tunnel], routes: dict[Any, list[str]]) -> SafeString:
        """The table's rows, worked out once here rather than per row in the template: a `{% url %}`, a `|date` and
        nine escaped variables per row were most of this page's cost (issue 13). The link is reversed once and
        completed with each tunnel's id (the URL `{% url 'ui:tunnel' … %}` gives); a day is formatted once, by the
        `date` filter; every value is escaped as the template escapes it (`html.escape`, quotes included)."""
        head, _, tail = self.org_url("ui:tunnel", _ID_STAND_IN).partition(_ID_STAND_IN)
        head, tail = escape(head), escape(tail)  # a UUID's hex between them needs no escaping
        here = get_current_timezone()  # as the template's localtime, once
        days: dict[datetime.date, str] = {}
        out = []
        for t in tunnels:
            created = t.created_at.astimezone(here)
            day = days.get(created.date())
            if day is None:
                day = days[created.date()] = escape(date_filter(created, "j M Y"))
            names = routes.get(t.pk)
            values = {
                "id": str(t.id),
                "url": f"{head}{t.id.hex}{tail}",
                "name": escape(t.name),
                "routes": "".join([_ROUTE.format(escape(n)) for n in names]) if names else _NO_ROUTE,
                "created": day,
            }
            out.append(_ROW_PERCENT % _ROW_VALUES(values))
        return SafeString("".join(out))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = TunnelCreateForm(request.POST)
        if form.is_valid():
            try:
                tunnel = services.tunnel_create(
                    organisation=self.organisation, name=form.cleaned_data["name"], actor=self.actor
                )
            except (ValidationError, PermissionDenied) as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, f"Tunnel “{tunnel.name}” created. Install a connector to bring it up.")
                return self.to_tunnel(tunnel, "install")
        return self.render_to_response(self.get_context_data(form=form))


class TunnelDetailView(TunnelPage):
    template_name = "tunnels/ui/detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        tunnel = self.tunnel(**kwargs)
        health = selectors.tunnel_health(tunnel=tunnel)
        rules = list((tunnel.config or {}).get("ingress") or [])
        hostnames = [
            {"index": i, "rule": rule, "settings": setting_words(rule.get("originRequest"))}
            for i, rule in enumerate(rules)
            if rule.get("hostname")
        ]
        catch_all = rules[-1] if rules and not rules[-1].get("hostname") and not rules[-1].get("path") else None
        context.update(
            tunnel=tunnel,
            live_tunnels=[tunnel_status_json(tunnel, health)],
            hostnames=hostnames,
            catch_all=catch_all,
            rename_form=kwargs.get("rename_form") or TunnelRenameForm(initial={"name": tunnel.name}),
            rotate_form=RotateForm(),
            delete_form=DeleteTunnelForm(),
            connector_version=CONNECTOR_VERSION,
            wheel_url=wheel_url(),
            **self.origin_errors(tunnel),
        )
        # The feed of this page also carries the tunnel's origin errors (of the search, if any) as they happen.
        context["status_socket"] += "?" + urlencode(
            {"tunnel": tunnel.id.hex, "request_id": context["origin_error_search"]}
        )
        if self.can_edit:
            context["commands"] = install_commands(services.tunnel_token(tunnel))
            context["install_warnings"] = install_warnings()
        return context

    def origin_errors(self, tunnel: Tunnel) -> dict[str, Any]:
        """Recent origin errors, or those of the request id searched for (`?request_id=`)."""
        request_id = selectors.clean_request_id(self.request.GET.get("request_id"))
        errors = selectors.origin_error_list(tunnel=tunnel, request_id=request_id)
        elsewhere = []
        if request_id and not errors:
            elsewhere = selectors.origin_error_tunnels(organisation=self.organisation, request_id=request_id)
        return {"origin_errors": errors, "origin_error_search": request_id, "origin_error_elsewhere": elsewhere}


class TunnelRenameView(TunnelDetailView):
    template_name = "tunnels/ui/detail.html"
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        tunnel = self.tunnel(**kwargs)
        form = TunnelRenameForm(request.POST)
        if form.is_valid():
            try:
                tunnel = services.tunnel_update(tunnel=tunnel, actor=self.actor, name=form.cleaned_data["name"])
            except (ValidationError, PermissionDenied) as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, f"Renamed to “{tunnel.name}”.")
                return self.to_tunnel(tunnel)
        return self.render_to_response(self.get_context_data(rename_form=form, **kwargs))


class TunnelRotateView(TunnelPage):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = RotateForm(request.POST)
        form.is_valid()
        disconnect = bool(form.cleaned_data.get("disconnect"))
        tunnel = services.tunnel_rotate_secret(tunnel=self.tunnel(**kwargs), actor=self.actor, disconnect=disconnect)
        messages.success(
            request,
            "Token rotated: connectors must use the new token below. "
            + (
                "Connectors using the old one were disconnected."
                if disconnect
                else "Running connectors stay up until they restart."
            ),
        )
        return self.to_tunnel(tunnel, "install")


class TunnelDisconnectView(TunnelPage):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        tunnel = self.tunnel(**kwargs)
        try:
            services.connections_disconnect(
                tunnel=tunnel, actor=self.actor, connector_id=request.POST.get("connector_id") or None
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, "Disconnected. Connectors reconnect by themselves unless stopped.")
        return self.to_tunnel(tunnel, "connectors")


class TunnelDeleteView(TunnelPage):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        tunnel = self.tunnel(**kwargs)
        form = DeleteTunnelForm(request.POST)
        form.is_valid()
        try:
            services.tunnel_delete(tunnel=tunnel, actor=self.actor, cascade=bool(form.cleaned_data.get("cascade")))
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return self.to_tunnel(tunnel, "delete")
        messages.success(request, f"Tunnel “{tunnel.name}” deleted.")
        return redirect(self.org_url("ui:tunnels"))


class PublicHostnameView(TunnelPage):
    """Add (no index) or edit (index) one public hostname, leaving every other rule as it is."""

    template_name = "tunnels/ui/hostname.html"

    def zones(self) -> list[str]:
        return list(
            Zone.objects.for_org(self.organisation).filter(status=ZoneStatus.ACTIVE).values_list("name", flat=True)
        )

    def index(self, tunnel: Tunnel, **kwargs: Any) -> int | None:
        if "index" not in kwargs:
            return None
        rules = (tunnel.config or {}).get("ingress") or []
        try:
            index = int(kwargs["index"])
        except ValueError:
            index = -1
        if not 0 <= index < len(rules) or not rules[index].get("hostname"):
            from controlplane.errors import NotFound

            raise NotFound("No such public hostname.")
        return index

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        tunnel = self.tunnel(**kwargs)
        index = self.index(tunnel, **kwargs)
        zones = self.zones()
        form = kwargs.get("form")
        if form is None:
            initial = {}
            if index is not None:
                initial = PublicHostnameForm.initial_from_rule(tunnel.config["ingress"][index], zones)
            form = PublicHostnameForm(zones=zones, initial=initial)
        context.update(tunnel=tunnel, index=index, form=form, zones=zones)
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        tunnel = self.tunnel(**kwargs)
        index = self.index(tunnel, **kwargs)
        form = PublicHostnameForm(request.POST, zones=self.zones())
        if form.is_valid():
            try:
                services.public_hostname_save(tunnel=tunnel, actor=self.actor, rule=form.to_rule(), index=index)
            except (ValidationError, PermissionDenied) as exc:
                form.add_service_error(exc)
            else:
                messages.success(request, f"Public hostname {form.to_rule()['hostname']} saved and routed.")
                return self.to_tunnel(tunnel, "hostnames")
        return self.render_to_response(self.get_context_data(form=form, **kwargs))


class PublicHostnameDeleteView(TunnelPage):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        tunnel = self.tunnel(**kwargs)
        index = PublicHostnameView.index(self, tunnel, **kwargs)  # type: ignore[arg-type]
        hostname = tunnel.config["ingress"][index]["hostname"]
        try:
            services.public_hostname_delete(tunnel=tunnel, actor=self.actor, index=index)  # type: ignore[arg-type]
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, f"Public hostname {hostname} removed, with its DNS record.")
        return self.to_tunnel(tunnel, "hostnames")


class ConnectorStatusView(TunnelPage):
    """Every tunnel's connectors, live: the organisation's connector status page."""

    template_name = "tunnels/ui/connectors.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        # One page at a time, newest first: an organisation with 1,000 tunnels gets a page as fast as one with 10
        # (rendering every row was most of this page's cost: docs/benchmarks.md, "API").
        page = Paginator(selectors.tunnel_list(organisation=self.organisation), TUNNELS_PER_PAGE).get_page(
            self.request.GET.get("page")
        )
        tunnels = list(page.object_list)
        context["page"] = page
        health = selectors.tunnel_health_map(organisation=self.organisation, tunnels=tunnels)
        context["live_tunnels"] = [tunnel_status_json(t, health[t.pk]) for t in tunnels]
        return context


class NotificationsView(TunnelPage):
    template_name = "tunnels/ui/notifications.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["destinations"] = NotificationDestination.objects.for_org(self.organisation)
        context.setdefault("form", NotificationForm(initial={"health": True, "lifecycle": True}))
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = NotificationForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            alert_types = [
                *([NotificationDestination.ALERT_HEALTH] if data["health"] else []),
                *([NotificationDestination.ALERT_UPDATE] if data["lifecycle"] else []),
            ]
            try:
                services.notification_destination_create(
                    organisation=self.organisation,
                    actor=self.actor,
                    name=data["name"],
                    kind=data["kind"],
                    emails=[e for e in (data.get("emails") or "").replace(";", ",").split(",") if e.strip()],
                    url=data.get("url") or "",
                    secret=data.get("secret") or "",
                    alert_types=alert_types or ["none"],
                )
            except (ValidationError, PermissionDenied) as exc:
                apply_service_error(form, exc, field_map={"alert_types": "health"})
            else:
                messages.success(request, f"Notifications go to “{data['name']}” from now on.")
                return redirect(self.org_url("ui:tunnel-notifications"))
        return self.render_to_response(self.get_context_data(form=form))


class NotificationDeleteView(TunnelPage):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        destination = self.get_org_object(NotificationDestination, kwargs["destination_id"])
        services.notification_destination_delete(destination=destination, actor=self.actor)
        messages.success(request, f"“{destination.name}” removed.")
        return redirect(self.org_url("ui:tunnel-notifications"))
