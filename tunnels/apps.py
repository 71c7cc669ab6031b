from django.apps import AppConfig


class TunnelsConfig(AppConfig):
    name = "tunnels"
    verbose_name = "Tunnels"
