"""Websocket routes of every app (each app exports `websocket_urlpatterns`)."""

websocket_urlpatterns: list = []
