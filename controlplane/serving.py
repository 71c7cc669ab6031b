"""Django's HTTP requests under ASGI with one sync/async hand-off per request (docs/architecture.md, "Serving").

Django's own ASGIHandler runs its middleware in async mode, so every sync-only middleware, the request_started and
request_finished signals (close_old_connections is sync), every sync view and the closing of the response each cross
the sync/async boundary: four or more hand-offs per request, through asgiref's thread-sensitive machinery. Measured
under load, most of the server's samples waited there (issue 13).

Every view, middleware and signal receiver of this project is sync (the async work: websockets, the edge, lives
outside Django's request machinery), so the whole request is run here as a WSGI server would run it: the request
body is read on the event loop, then one call on a persistent pool of threads runs the signals, the sync
middleware chain and the view and renders the body, and the loop sends it. The call goes through asgiref's
`SyncToAsync` with that pool as its executor, so `async_to_sync` inside a view (the hub's events) still reaches
this event loop, and context variables follow the request, as under Django's handler.

Each pool thread keeps its database connection between requests (CONN_MAX_AGE, controlplane/settings/
database.py). Streaming responses (WhiteNoise's files) are read chunk by chunk on the pool.
"""

from __future__ import annotations

import gc
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import SyncToAsync
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse
from django.urls import get_resolver, set_script_prefix

_EXHAUSTED = object()

# The URL resolutions remembered per process (SyncASGIHandler.resolve_request): entries, and the longest path kept.
RESOLVE_MEMO_MAX = 4096
RESOLVE_MEMO_PATH_MAX = 256


class SyncASGIHandler(ASGIHandler):
    """An ASGI app for Django's HTTP requests: the sync middleware chain, one pool hop per request."""

    def __init__(self, threads: int | None = None) -> None:
        # BaseHandler.__init__ only declares the middleware attributes; the chain is loaded in sync mode.
        super(ASGIHandler, self).__init__()
        self.load_middleware(is_async=False)
        count = threads or settings.DJANGO_HTTP_THREADS
        self.executor = ThreadPoolExecutor(max_workers=count, thread_name_prefix="django-http")
        self._respond = SyncToAsync(self._get_response_sync, thread_sensitive=False, executor=self.executor)
        self._next_chunk = SyncToAsync(_next_chunk, thread_sensitive=False, executor=self.executor)
        self._close = SyncToAsync(_close, thread_sensitive=False, executor=self.executor)
        self._resolved: dict[tuple[Any, str], Any] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            response, body = await self._respond(scope, body_file)
            try:
                await self._send(response, body, send)
            finally:
                if response.streaming:  # closed after its last chunk; the others were closed on the pool
                    await self._close(response)
        finally:
            body_file.close()

    def resolve_request(self, request: Any) -> Any:
        """Django's, remembered per path: the URLconf is tried pattern by pattern on every request (~20–65 µs for an
        API path here, issue 13), and the answer for a path never changes while the URLconf stays. Only matches are
        kept (a 404 is resolved again), short paths only, at most RESOLVE_MEMO_MAX of them. The match is shared:
        Django hands the view a copy of its arguments, and nothing here writes to `request.resolver_match`."""
        if hasattr(request, "urlconf"):
            return super().resolve_request(request)
        resolver, path = get_resolver(), request.path_info
        match = self._resolved.get((resolver, path))
        if match is None:
            match = resolver.resolve(path)
            if len(path) <= RESOLVE_MEMO_PATH_MAX:
                if len(self._resolved) >= RESOLVE_MEMO_MAX:
                    self._resolved.clear()
                self._resolved[(resolver, path)] = match
        request.resolver_match = match
        return match

    def _get_response_sync(self, scope: dict[str, Any], body_file: Any) -> tuple[Any, bytes | None]:
        """On a pool thread: what WSGIHandler.__call__ does. A rendered response is closed here (request_finished,
        which returns the database connection), before the loop sends the bytes it already holds."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
        if response.streaming:
            return response, None
        body = response.content
        response.close()
        return response, body

    async def _send(self, response: Any, body: bytes | None, send: Any) -> None:
        headers = [
            (header.encode("ascii") if isinstance(header, str) else bytes(header), _latin1(value))
            for header, value in response.items()
        ]
        headers += [(b"Set-Cookie", c.output(header="").encode("ascii").strip()) for c in response.cookies.values()]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        if body is not None:
            for chunk, last in self.chunk_bytes(body):
                await send({"type": "http.response.body", "body": chunk, "more_body": not last})
            return
        if response.is_async:
            async for part in response:
                for chunk, _ in self.chunk_bytes(part):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        else:
            iterator = iter(response)
            while (part := await self._next_chunk(iterator)) is not _EXHAUSTED:
                for chunk, _ in self.chunk_bytes(part):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body"})


def _latin1(value: Any) -> bytes:
    return value.encode("latin1") if isinstance(value, str) else bytes(value)


def _next_chunk(iterator: Any) -> Any:
    return next(iterator, _EXHAUSTED)


def _close(response: Any) -> None:
    response.close()


def get_sync_asgi_application(threads: int | None = None) -> SyncASGIHandler:
    """As django.core.asgi.get_asgi_application: set Django up, then the handler."""
    import django

    django.setup(set_prefix=False)
    return SyncASGIHandler(threads)


def freeze_startup_heap() -> None:
    """Once the server's application is built: import every view now (the URLconf is otherwise loaded by the first
    request), then move what start-up allocated (Django, the apps, the URLconf: never garbage) out of the
    collector's reach. Without it every collection of the oldest generation walked those ~0.5M objects: in one
    in-process pair of runs, a trivial view's CPU per request fell from ~270 to ~120 µs and GET tunnel's from ~4.2
    to ~2.7 ms (issue 13; the machine was loaded, so read it as an order of magnitude).
    The hub, when it starts, also raises the young generation's threshold (dataplane/loops.py, tune_gc)."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 (imports the views)
    gc.collect()
    gc.freeze()
