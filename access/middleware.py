"""A team domain (`<team>.<AUTH_DOMAIN>`) serves the Access pages and static files only; the admin UI and the API
stay on the control plane's own hosts, and the Access pages are not served there."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound

ACCESS_PREFIX = "/cdn-cgi/access/"


class TeamDomainMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.suffix = "." + settings.AUTH_DOMAIN

    def __call__(self, request: HttpRequest) -> HttpResponse:
        host = request.get_host().split(":", 1)[0].rstrip(".").lower()
        on_team_domain = host.endswith(self.suffix)
        path = request.path
        if on_team_domain and not (path.startswith(ACCESS_PREFIX) or path.startswith(settings.STATIC_URL)):
            return HttpResponseNotFound("Not found: a team domain serves the Access login pages only.")
        if not on_team_domain and path.startswith(ACCESS_PREFIX):
            return HttpResponseNotFound("Not found: the Access pages live on the team domain.")
        return self.get_response(request)
