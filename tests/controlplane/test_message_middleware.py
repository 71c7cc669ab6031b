"""Flash messages are built for pages, not for API calls (controlplane.middleware.MessageMiddleware)."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.test import RequestFactory

from controlplane.middleware import MessageMiddleware


def _request(path: str):
    request = RequestFactory().get(path)
    request.session = {}
    return request


def test_api_requests_get_no_message_storage():
    request = _request("/client/v4/accounts")
    MessageMiddleware(lambda r: None).process_request(request)
    assert not hasattr(request, "_messages")
    assert list(get_messages(request)) == []


def test_pages_keep_their_message_storage():
    request = _request("/o/abc/tunnels/")
    MessageMiddleware(lambda r: None).process_request(request)
    assert hasattr(request, "_messages")


@pytest.mark.django_db
def test_an_api_call_answers_with_the_middleware_in_place(client, token_a, org_a):
    answer = client.get(f"/client/v4/accounts/{org_a.account_id}", headers={"Authorization": f"Bearer {token_a}"})
    assert answer.status_code == 200
    assert answer.wsgi_request.__dict__.get("_messages") is None
