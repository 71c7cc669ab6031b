"""Websocket routes of every installed app: each app that has a `routing` module exports `websocket_urlpatterns`.
Found by discovery (as Django's admin finds `admin` modules), so the core imports no product app."""

from importlib import import_module

from django.apps import apps
from django.utils.module_loading import module_has_submodule


def _discover() -> list:
    patterns: list = []
    for config in apps.get_app_configs():
        if config.name != "controlplane" and module_has_submodule(config.module, "routing"):
            patterns.extend(getattr(import_module(f"{config.name}.routing"), "websocket_urlpatterns", []))
    return patterns


websocket_urlpatterns: list = _discover()
