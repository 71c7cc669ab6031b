"""Two-factor authentication (django-otp)."""

from __future__ import annotations

OTP_TOTP_ISSUER = "Zero Trust control plane"
OTP_TOTP_THROTTLE_FACTOR = 1
OTP_STATIC_THROTTLE_FACTOR = 1
BACKUP_CODE_COUNT = 10
