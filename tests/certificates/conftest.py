from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certificates.logic import pki
from tests.factories import ZoneFactory


@pytest.fixture
def zone_a(org_a):
    return ZoneFactory(organisation=org_a, name="alpha.example")


@pytest.fixture
def zone_b(org_b):
    return ZoneFactory(organisation=org_b, name="bravo.example")


def make_csr(names=("alpha.example",), key=None) -> str:
    return pki.build_csr(key or ec.generate_private_key(ec.SECP256R1()), list(names))


def rsa_csr(bits: int, names=("alpha.example",)) -> str:
    return pki.build_csr(rsa.generate_private_key(public_exponent=65537, key_size=bits), list(names))


@pytest.fixture(autouse=True)
def _real_commits(transactional_db):
    """Issuing jobs are queued on commit (and run eagerly, in-process, as in embedded mode): these tests commit for
    real so that the API answers with what a user would get."""
