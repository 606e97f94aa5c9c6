"""Configuration: defaults, then instance/config.py, then environment variables."""

from __future__ import annotations

import os

ENV_KEYS = {
    "SECRET_KEY": str,
    "DATABASE_URL": str,
    "PUBLIC_BASE_URL": str,
    "PAYMENTS": str,
    "STRIPE_SECRET_KEY": str,
    "STRIPE_WEBHOOK_SECRET": str,
    "STRIPE_API_BASE": str,
    "CURRENCY": str,
    "PORT_DRIVER": str,
    "SIM_SPEED": float,
    "RATELIMIT_STORAGE_URI": str,
    "BABEL_DEFAULT_LOCALE": str,
    "TOPUP_AMOUNTS_FEN": lambda v: [int(x) for x in v.split(",")],
    "SESSION_COOKIE_SECURE": lambda v: v.lower() in ("1", "true", "yes"),
    "RUN_WORKER_IN_PROCESS": lambda v: v.lower() in ("1", "true", "yes"),
    "WORKER_INTERVAL_SECONDS": float,
}


def defaults(instance_path: str) -> dict:
    """The built-in configuration, good for a local demo."""
    return {
        "SECRET_KEY": "dev-only-change-me",
        "DATABASE_URL": "sqlite:///" + os.path.join(instance_path, "chargeshed.sqlite3"),
        "PUBLIC_BASE_URL": "http://127.0.0.1:5000",
        "PAYMENTS": "demo",
        "STRIPE_SECRET_KEY": "",
        "STRIPE_WEBHOOK_SECRET": "",
        "STRIPE_API_BASE": "",
        "CURRENCY": "cny",
        "PORT_DRIVER": "sim",
        "SIM_SPEED": 1.0,
        "RATELIMIT_STORAGE_URI": "memory://",
        "BABEL_DEFAULT_LOCALE": "zh_CN",
        "LANGUAGES": ["zh_CN", "en"],
        "TOPUP_AMOUNTS_FEN": [1000, 2000, 5000],
        "PENDING_START_TTL_SECONDS": 15 * 60,
        "RUN_WORKER_IN_PROCESS": False,
        "WORKER_INTERVAL_SECONDS": 5.0,
        "REMEMBER_COOKIE_DURATION_DAYS": 365,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SECURE": False,
        "WTF_CSRF_TIME_LIMIT": None,
        "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,
    }


def from_environment(environ: dict[str, str] | None = None) -> dict:
    """Overrides read from environment variables (only the keys in ENV_KEYS)."""
    environ = os.environ if environ is None else environ
    found = {}
    for key, convert in ENV_KEYS.items():
        if environ.get(key):
            found[key] = convert(environ[key])
    return found
