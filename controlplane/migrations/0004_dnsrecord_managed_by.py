"""DNS records name what manages them generically (`managed_by` + `managed_by_id`) instead of a foreign key to
tunnels.Tunnel, so the core no longer depends on a product app (issue 9, docs/architecture.md "Layers"). The
tunnel link of every existing record is copied over before the foreign key goes."""

from django.db import migrations, models


def tunnel_to_managed_by(apps, schema_editor):
    DnsRecord = apps.get_model("controlplane", "DnsRecord")
    DnsRecord._base_manager.filter(tunnel__isnull=False).update(
        managed_by="tunnel", managed_by_id=models.F("tunnel_id")
    )


def managed_by_to_tunnel(apps, schema_editor):
    DnsRecord = apps.get_model("controlplane", "DnsRecord")
    DnsRecord._base_manager.filter(managed_by="tunnel").update(tunnel_id=models.F("managed_by_id"))


class Migration(migrations.Migration):
    dependencies = [
        ("controlplane", "0003_dnsrecord_tunnel_dnsrecord_zone_and_more"),
    ]

    operations = [
        migrations.AddField(
            model_name="dnsrecord",
            name="managed_by",
            field=models.CharField(blank=True, default="", max_length=32),
        ),
        migrations.AddField(
            model_name="dnsrecord",
            name="managed_by_id",
            field=models.UUIDField(blank=True, db_index=True, null=True),
        ),
        migrations.RunPython(tunnel_to_managed_by, managed_by_to_tunnel),
        migrations.RemoveField(model_name="dnsrecord", name="tunnel"),
    ]
