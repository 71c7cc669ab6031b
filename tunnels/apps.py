from django.apps import AppConfig


class TunnelsConfig(AppConfig):
    name = "tunnels"
    verbose_name = "Tunnels"

    def ready(self) -> None:
        # The core learns about tunnels only through these registrations (docs/architecture.md, "Layers").
        from controlplane.services.dns import dns_records_changed, register_cname_target_owner, register_record_guard
        from controlplane.ui import extensions
        from tunnels.dns import MANAGED_BY_TUNNEL, reload_routes, tunnel_cname_owner, tunnel_record_guard
        from tunnels.forms import SETTING_LABELS
        from tunnels.overview import overview_part

        register_cname_target_owner(tunnel_cname_owner)
        register_record_guard(MANAGED_BY_TUNNEL, tunnel_record_guard)
        extensions.register_overview_part(overview_part)
        extensions.audit_field_labels.update(SETTING_LABELS)
        dns_records_changed.connect(reload_routes, dispatch_uid="tunnels.reload_routes")
