"""Core Django settings. Integrations live in their own modules beside this one."""

from __future__ import annotations

from .env import BASE_DIR, PRODUCTION, env_bool, env_int, env_list, env_str, generate_secret_key, persistent_secret

SECRET_KEY = persistent_secret("SECRET_KEY", "secret_key", generate_secret_key)
DEBUG = env_bool("DEBUG", default=False)
# bench/api only: serve a trivial JSON view at /bench/trivial, the ceiling of Django's request machinery.
BENCH_ENDPOINTS = env_bool("BENCH_ENDPOINTS", default=False)
if BENCH_ENDPOINTS and PRODUCTION:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("BENCH_ENDPOINTS is for bench/api on a throwaway data dir, never in production.")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# The team domain of an organisation is <team name>.<AUTH_DOMAIN>.
AUTH_DOMAIN = env_str("AUTH_DOMAIN", "access.localhost")
# Team domains serve the Access login pages (access.middleware keeps everything else off them).
ALLOWED_HOSTS = [*ALLOWED_HOSTS, f".{AUTH_DOMAIN}"]
# Public address of this control plane, used in links sent by email and in install commands.
PUBLIC_URL = (env_str("PUBLIC_URL", "http://127.0.0.1:8000") or "").rstrip("/")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "controlplane",
    "tunnels",
    "access",
    "certificates",
]

MIDDLEWARE = [
    "controlplane.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "controlplane.security_headers.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "access.middleware.TeamDomainMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "controlplane.second_factor.AuthenticationMiddleware",  # Django's, the user read prepared
    "controlplane.second_factor.OTPMiddleware",  # django-otp's, shared with websockets
    "controlplane.middleware.RequestContextMiddleware",
    "controlplane.middleware.DependencyFailureMiddleware",
    "controlplane.middleware.MessageMiddleware",  # Django's, skipped for the API
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Threads per server process running Django's (sync) HTTP requests (controlplane/serving.py). Python runs one
# thread at a time: more threads only help requests that wait (on a remote database), and cost CPU in switching
# between them. bench/api at c=20 on 2 cores: CPU per request of a page of tunnels 3,000–3,600 µs with 1–2 threads,
# 5,100 with 4, 6,700 with 8 (issue 13). Two keep one thread free while the other waits on the database.
DJANGO_HTTP_THREADS = env_int("DJANGO_HTTP_THREADS", 2)

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"
ASGI_APPLICATION = "controlplane.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "controlplane.ui.context.shell",
            ],
        },
    },
]

AUTH_USER_MODEL = "controlplane.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "ui:login"
LOGIN_REDIRECT_URL = "ui:home"
PASSWORD_RESET_TIMEOUT = 60 * 60 * 3

# Sign-in throttling: after LOGIN_MAX_FAILURES failed attempts the account is locked for LOGIN_LOCKOUT_SECONDS,
# doubling on each further lockout; failures per client IP are limited separately.
LOGIN_MAX_FAILURES = env_int("LOGIN_MAX_FAILURES", 5)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 15 * 60)
LOGIN_IP_MAX_FAILURES = env_int("LOGIN_IP_MAX_FAILURES", 50)

# Django's database sessions, read through a prepared query (controlplane/sessions.py).
SESSION_ENGINE = "controlplane.sessions"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 60 * 60 * 12)
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "controlplane.staticfiles.StaticFilesStorage"},  # Django's, URLs worked out once
}
WHITENOISE_USE_FINDERS = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
