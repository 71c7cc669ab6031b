"""Public downloads of the connector."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse

from tunnels.install import wheel


def connector_download(request: HttpRequest, filename: str) -> HttpResponse:
    name, data = wheel()
    if filename != name:
        raise Http404("No such file.")
    response = HttpResponse(data, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "public, max-age=300"
    return response
