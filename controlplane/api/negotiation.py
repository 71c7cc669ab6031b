"""DRF's content negotiation, remembered: the same Accept header and format against the same renderers always
selects the same renderer and media type, so each distinct question is answered once per process (issue 13:
parsing the Accept header and matching it took ~10 % of a small API request's CPU)."""

from __future__ import annotations

import threading
from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation

# Accept headers are the client's to choose: the memo holds at most this many answers, then starts again.
MEMO_SIZE = 256

_memo: dict[tuple[Any, ...], tuple[int, str]] = {}
_lock = threading.Lock()


class MemoContentNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request: Any, renderers: Any, format_suffix: Any = None) -> tuple[Any, str]:
        # Without a query string there is no format override to read (and no QueryDict to build for it).
        override = (
            request.query_params.get(self.settings.URL_FORMAT_OVERRIDE) if request.META.get("QUERY_STRING") else None
        )
        key = (
            tuple(type(renderer) for renderer in renderers),
            format_suffix,
            override,
            request.META.get("HTTP_ACCEPT", "*/*"),
        )
        known = _memo.get(key)
        if known is not None:
            return renderers[known[0]], known[1]
        renderer, media_type = super().select_renderer(request, renderers, format_suffix)  # NotAcceptable: not kept
        index = next(i for i, each in enumerate(renderers) if each is renderer)
        with _lock:
            if len(_memo) >= MEMO_SIZE:
                _memo.clear()
            _memo[key] = (index, media_type)
        return renderer, media_type
