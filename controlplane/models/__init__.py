"""Core tenancy models: users, organisations and what belongs to them."""

from .audit import AppendOnlyError, AuditEvent
from .dns import DnsRecord
from .organisations import Invitation, Membership, Organisation
from .outbox import OutboxMessage
from .tokens import ApiToken
from .users import User
from .zones import Zone

__all__ = [
    "ApiToken",
    "AppendOnlyError",
    "AuditEvent",
    "DnsRecord",
    "Invitation",
    "Membership",
    "Organisation",
    "OutboxMessage",
    "User",
    "Zone",
]
