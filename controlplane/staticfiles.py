"""The static files storage (`STORAGES["staticfiles"]`): Django's, with each file's URL worked out once per process
and base URL. Every page's `{% static %}` tags (six in the layout and the tunnel list) each ran `filepath_to_uri` and
`urljoin` for the same few names: ~12 % of rendering a page (issue 13)."""

from __future__ import annotations

from django.contrib.staticfiles.storage import StaticFilesStorage as DjangoStaticFilesStorage

# Static names in templates are a fixed, small set; the memo is emptied if it ever holds more.
MAX_URLS = 1024


class StaticFilesStorage(DjangoStaticFilesStorage):
    def url(self, name: str | None) -> str:
        # Keyed by the base URL too: it is read from settings (STATIC_URL) and reset when they change.
        key = (self.base_url, name)
        urls = self.__dict__.setdefault("_urls", {})
        url = urls.get(key)
        if url is None:
            if len(urls) >= MAX_URLS:
                urls.clear()
            url = urls[key] = super().url(name)
        return url
