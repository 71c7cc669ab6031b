from django.db import migrations


def forwards(apps, schema_editor):
    Organisation = apps.get_model("controlplane", "Organisation")
    IdentityProvider = apps.get_model("access", "IdentityProvider")
    have = set(IdentityProvider._base_manager.filter(type="onetimepin").values_list("organisation_id", flat=True))
    IdentityProvider._base_manager.bulk_create(
        [
            IdentityProvider(organisation_id=org_id, name="One-time PIN", type="onetimepin")
            for org_id in Organisation.objects.values_list("pk", flat=True)
            if org_id not in have
        ]
    )


class Migration(migrations.Migration):
    dependencies = [("access", "0001_initial"), ("controlplane", "0003_dnsrecord_tunnel_dnsrecord_zone_and_more")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
