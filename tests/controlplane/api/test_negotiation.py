"""The remembered content negotiation (controlplane/api/negotiation.py) answers as DRF's own: a JSON media type
with the client's parameters, any type and none alike, and 406 for a type no renderer offers, every time."""

from __future__ import annotations

import pytest
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from controlplane.api import negotiation
from controlplane.api.envelope import EnvelopeRenderer

ACCEPTS = [None, "*/*", "application/json", "application/json; indent=4", "text/html, application/*;q=0.5"]


def _request(accept: str | None, query: str = "") -> Request:
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    return Request(APIRequestFactory().get(f"/x{query}", **headers))


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("renderers", [[EnvelopeRenderer], [JSONRenderer, BrowsableAPIRenderer]])
def test_same_answer_as_drf_twice(accept, renderers):
    negotiation._memo.clear()
    for _ in range(2):  # the first computes, the second comes from the memo
        instances = [cls() for cls in renderers]
        renderer, media_type = negotiation.MemoContentNegotiation().select_renderer(_request(accept), instances)
        expected_renderer, expected_type = DefaultContentNegotiation().select_renderer(_request(accept), instances)
        assert renderer is expected_renderer and media_type == expected_type


def test_not_acceptable_every_time_and_not_remembered():
    from rest_framework.exceptions import NotAcceptable

    negotiation._memo.clear()
    for _ in range(2):
        with pytest.raises(NotAcceptable):
            negotiation.MemoContentNegotiation().select_renderer(_request("text/html"), [EnvelopeRenderer()])
    assert not negotiation._memo


def test_the_memo_is_bounded():
    negotiation._memo.clear()
    for index in range(negotiation.MEMO_SIZE + 10):
        negotiation.MemoContentNegotiation().select_renderer(
            _request(f"application/json; v={index}"), [EnvelopeRenderer()]
        )
    assert len(negotiation._memo) <= negotiation.MEMO_SIZE


def test_the_api_refuses_an_unacceptable_type(client, token_a, org_a):
    answer = client.get(
        f"/client/v4/accounts/{org_a.account_id}",
        headers={"Authorization": f"Bearer {token_a}", "Accept": "text/html"},
    )
    assert answer.status_code == 406
    answer = client.get(
        f"/client/v4/accounts/{org_a.account_id}",
        headers={"Authorization": f"Bearer {token_a}", "Accept": "application/json"},
    )
    assert answer.status_code == 200
