"""Channel layer: in-process without REDIS_URL, Redis with it."""

from __future__ import annotations

from typing import Any

from .env import env_str


def redis_channel_layer(url: str) -> dict[str, Any]:
    """The production channel layer on `url` (the topology tests build theirs with this too)."""
    return {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        # Measured: redis-py's default pool cap and 5 s socket timeout break channels-redis under load.
        "CONFIG": {"hosts": [{"address": url, "max_connections": 1000, "socket_timeout": 30}]},
    }


REDIS_URL = env_str("REDIS_URL")

if REDIS_URL:
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
    # Bounded: with Redis unreachable a request fails fast (503) instead of hanging a worker.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 3, "socket_timeout": 5},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
