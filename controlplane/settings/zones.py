"""Zone ownership verification."""

from __future__ import annotations

from .env import env_bool, env_list, env_str

# The TXT record an organisation publishes to prove it owns a zone: <ZONE_VERIFICATION_PREFIX>.<zone>
ZONE_VERIFICATION_PREFIX = env_str("ZONE_VERIFICATION_PREFIX", "_zt-verify")
# Resolvers asked for that record ("ip" or "ip:port"); empty means the system's resolvers.
ZONE_VERIFICATION_NAMESERVERS = env_list("ZONE_VERIFICATION_NAMESERVERS", [])
# Single-tenant installs may trust every zone an organisation adds.
ZONES_AUTO_VERIFY = env_bool("ZONES_AUTO_VERIFY", default=False)
