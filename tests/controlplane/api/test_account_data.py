"""account_data (the account read's plain function) answers exactly what AccountSerializer answers, as JSON bytes,
in UTC and in another time zone, with 2FA required or not."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from controlplane.api.serializers.accounts import AccountSerializer, account_data
from tests.factories import OrganisationFactory


@pytest.mark.django_db
@pytest.mark.parametrize("require_2fa", [True, False])
@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris"])
def test_account_data_renders_as_the_serializer(require_2fa, zone, settings):
    settings.TIME_ZONE = zone
    organisation = OrganisationFactory(require_2fa=require_2fa, display_name="Ünïcode & <Co>")
    organisation.created_at = datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC)
    with timezone.override(zone):
        plain = JSONRenderer().render(account_data(organisation))
        serialized = JSONRenderer().render(AccountSerializer(organisation).data)
    assert plain == serialized
    assert b'"enforce_twofactor":' + (b"true" if require_2fa else b"false") in plain
