from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Access"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from access import events  # noqa: F401  (declares the `access` event kind to this process's hub)
        from controlplane.models import Organisation

        post_save.connect(_give_one_time_pin, sender=Organisation, dispatch_uid="access-default-idp")


def _give_one_time_pin(sender, instance, created, raw=False, **kwargs) -> None:  # type: ignore[no-untyped-def]
    """Every organisation can sign visitors in with a one-time PIN from the start, as on Cloudflare."""
    if created and not raw:
        from access.services.directory import one_time_pin_provider

        one_time_pin_provider(instance)
