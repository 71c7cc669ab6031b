from django.apps import AppConfig


class CertificatesConfig(AppConfig):
    name = "certificates"
    verbose_name = "Origin certificates"

    def ready(self) -> None:
        # Connectors receive the Origin CA roots with every configuration; the hub learns where to get them here.
        from certificates.ca import trust_bundle
        from tunnels.runtime import register_origin_ca_source

        register_origin_ca_source(trust_bundle)
