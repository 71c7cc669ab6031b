"""controlplane/staticfiles.py: a static file's URL is Django's, worked out once per process and base URL."""

from __future__ import annotations

from django.contrib.staticfiles.storage import StaticFilesStorage as DjangoStaticFilesStorage
from django.contrib.staticfiles.storage import staticfiles_storage
from django.templatetags.static import static

from controlplane.staticfiles import MAX_URLS, StaticFilesStorage


def test_the_configured_storage_is_the_memoising_one():
    staticfiles_storage.url("ui/app.css")  # set up
    assert type(staticfiles_storage._wrapped) is StaticFilesStorage


def test_urls_are_djangos_and_follow_static_url(settings):
    names = ["ui/app.css", "ui/favicon.svg", "tunnels/live.js", "a b/ç?.js", "ui/app.css"]
    for name in names:
        assert static(name) == DjangoStaticFilesStorage().url(name)
    settings.STATIC_URL = "/assets/"  # the storage's base URL is reset on a settings change: so is its memo's key
    for name in names:
        assert static(name) == DjangoStaticFilesStorage().url(name) and static(name).startswith("/assets/")


def test_the_memo_is_bounded():
    storage = StaticFilesStorage()
    for index in range(MAX_URLS + 10):
        assert storage.url(f"f{index}.js") == DjangoStaticFilesStorage().url(f"f{index}.js")
    assert len(storage._urls) <= MAX_URLS
