"""Configuration: defaults, then instance/config.py, then environment variables."""

from __future__ import annotations

import json
import os

# Defaults that services also use as their parameters' defaults: defined here once, imported there.
# Alipay allows refunds for 90 days (WeChat Pay 180, cards longer): the strictest wins.
REFUND_WINDOW_DAYS = 90
START_TIMEOUT_SECONDS = 60  # a start the port never confirmed fails (hold released) after this


def _flag(value: str) -> bool:
    return value.lower() in ("1", "true", "yes", "on")


ENV_KEYS = {
    "CHARGESHED_ENV": str,
    "SECRET_KEY": str,
    "DATABASE_URL": str,
    "PUBLIC_BASE_URL": str,
    "PAYMENTS": str,
    "STRIPE_SECRET_KEY": str,
    "STRIPE_WEBHOOK_SECRET": str,
    "STRIPE_API_BASE": str,
    "STRIPE_CONNECT_TIMEOUT_SECONDS": float,
    "STRIPE_READ_TIMEOUT_SECONDS": float,
    "STRIPE_MAX_NETWORK_RETRIES": int,
    "CURRENCY": str,
    "PORT_DRIVER": str,
    "SIM_SPEED": float,
    "RATELIMIT_STORAGE_URI": str,
    "BABEL_DEFAULT_LOCALE": str,
    "TOPUP_AMOUNTS_FEN": lambda v: [int(x) for x in v.split(",")],
    "SESSION_COOKIE_SECURE": _flag,
    "RUN_WORKER_IN_PROCESS": _flag,
    "WORKER_INTERVAL_SECONDS": float,
    "REFUND_WINDOW_DAYS": int,
    "SAFETY_UPLOAD_DIR": str,
    "SAFETY_RESPONSE_HOURS": int,
    "START_TIMEOUT_SECONDS": int,
    "SIM_STATE_FILE": str,
    "LOG_FORMAT": str,
    "LOG_LEVEL": str,
    "PROXY_FIX": int,
    "HSTS_SECONDS": int,
    "OCPP_TLS_CERT": str,
    "OCPP_TLS_KEY": str,
    "MQTT_URL": str,
    "MQTT_USERNAME": str,
    "MQTT_PASSWORD": str,
    "MQTT_TLS": _flag,
    "MQTT_CA_FILE": str,
    "MQTT_CLIENT_ID": str,
    "STATIC_BUILD_DIR": str,
    "OCPP_LISTEN": str,
    "NOTIFY_WECHAT_APP_ID": str,
    "NOTIFY_WECHAT_SECRET": str,
    "NOTIFY_WECHAT_API_BASE": str,
    "NOTIFY_WECHAT_OAUTH_BASE": str,
    "NOTIFY_WECHAT_TEMPLATES": json.loads,
    "ALIYUN_SMS_ACCESS_KEY_ID": str,
    "ALIYUN_SMS_ACCESS_KEY_SECRET": str,
    "ALIYUN_SMS_SIGN_NAME": str,
    "ALIYUN_SMS_API_BASE": str,
    "ALIYUN_SMS_TEMPLATES": json.loads,
}


def normalise_database_url(url: str) -> str:
    """postgres:// and postgresql:// (no driver named) mean psycopg 3, the driver we ship."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


# The built-in key signs the demo's cookies; anyone can read it here, so it never serves for real.
DEFAULT_SECRET_KEY = "dev-only-change-me"
# CHARGESHED_ENV values where the built-in key and per-process rate limits are allowed.
RELAXED_ENVS = ("demo", "test")


def defaults(instance_path: str) -> dict:
    """The built-in configuration, good for a local demo."""
    return {
        # "production" unless CHARGESHED_ENV says demo or test (`make run` does).
        "CHARGESHED_ENV": "production",
        "SECRET_KEY": DEFAULT_SECRET_KEY,
        "DATABASE_URL": "sqlite:///" + os.path.join(instance_path, "chargeshed.sqlite3"),
        "PUBLIC_BASE_URL": "http://127.0.0.1:5000",
        "PAYMENTS": "demo",
        "STRIPE_SECRET_KEY": "",
        "STRIPE_WEBHOOK_SECRET": "",
        "STRIPE_API_BASE": "",
        # Every Stripe call: bounded connect/read waits and one retry at most.
        "STRIPE_CONNECT_TIMEOUT_SECONDS": 3.0,
        "STRIPE_READ_TIMEOUT_SECONDS": 6.0,
        "STRIPE_MAX_NETWORK_RETRIES": 1,
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
        # Three 8 MB hazard photos fit in one report.
        "MAX_CONTENT_LENGTH": 26 * 1024 * 1024,
        "REFUND_WINDOW_DAYS": REFUND_WINDOW_DAYS,
        "SAFETY_UPLOAD_DIR": os.path.join(instance_path, "uploads", "safety"),
        "SAFETY_RESPONSE_HOURS": 24,
        # Pooled connections are not pinged before each use (that would cost three round trips per
        # request); after a database restart each web process fails one request, then reconnects.
        # Set {"pool_pre_ping": True} here (instance/config.py) to trade that for speed.
        "SQLALCHEMY_ENGINE_OPTIONS": {},
        # A start the port has not confirmed within this many seconds fails and releases its hold.
        "START_TIMEOUT_SECONDS": START_TIMEOUT_SECONDS,
        # The simulated charging units' state (PORT_DRIVER=sim): outside the worker, like real hardware.
        "SIM_STATE_FILE": os.path.join(instance_path, "sim_ports.json"),
        # Where the gateway (`flask --app chargeshed gateway`) listens for OCPP 1.6J stations.
        "OCPP_LISTEN": "127.0.0.1:9000",
        # Logs: "json" (one object per line, with the request id) or "text".
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        # Number of reverse proxies in front of the app whose X-Forwarded-* headers are trusted.
        "PROXY_FIX": 0,
        # Strict-Transport-Security max-age, sent on HTTPS requests only; 0 turns it off.
        "HSTS_SECONDS": 365 * 24 * 3600,
        # The MQTT broker of the metered relays (Shelly, Tasmota): mqtt:// or mqtts:// (TLS), credentials
        # in the URL or in MQTT_USERNAME / MQTT_PASSWORD; MQTT_CA_FILE for a private CA.
        "MQTT_URL": "mqtt://127.0.0.1:1883",
        # Static files with content-hashed names and their gzip/brotli variants, built at start-up
        # (chargeshed/assets.py); any writable folder the web processes share.
        "STATIC_BUILD_DIR": os.path.join(instance_path, "static"),
    }


def from_environment(environ: dict[str, str] | None = None) -> dict:
    """Overrides read from environment variables (only the keys in ENV_KEYS)."""
    environ = os.environ if environ is None else environ
    found = {}
    for key, convert in ENV_KEYS.items():
        if environ.get(key):
            found[key] = convert(environ[key])
    if "DATABASE_URL" in found:
        found["DATABASE_URL"] = normalise_database_url(found["DATABASE_URL"])
    # Served over HTTPS: cookies are Secure unless SESSION_COOKIE_SECURE says otherwise.
    if found.get("PUBLIC_BASE_URL", "").startswith("https://") and "SESSION_COOKIE_SECURE" not in found:
        found["SESSION_COOKIE_SECURE"] = True
        found["PREFERRED_URL_SCHEME"] = "https"
    return found


def unsafe_settings(config) -> list[str]:
    """What makes this configuration unfit to serve real people (empty when fine, or in demo/test).

    The built-in SECRET_KEY would let anyone forge a session cookie; an in-memory rate limit counts
    sign-in attempts per process, so N gunicorn workers let N times as many guesses through.
    """
    if config.get("TESTING") or config.get("CHARGESHED_ENV") in RELAXED_ENVS:
        return []
    problems = []
    if not config.get("SECRET_KEY") or config["SECRET_KEY"] == DEFAULT_SECRET_KEY:
        problems.append(
            "SECRET_KEY is not set (the built-in development key would let anyone forge a sign-in). "
            "Set SECRET_KEY to a long random value, e.g. "
            "python -c 'import secrets; print(secrets.token_hex(32))'."
        )
    storage = str(config.get("RATELIMIT_STORAGE_URI") or "memory://")
    if config.get("RATELIMIT_ENABLED", True) and storage.startswith("memory://"):
        problems.append(
            "RATELIMIT_STORAGE_URI is memory://: every web process would count sign-in attempts on its "
            "own. Set RATELIMIT_STORAGE_URI=redis://127.0.0.1:6379 (shared by all processes)."
        )
    return problems


def check_safe_to_serve(config) -> None:
    """Refuse to start with settings that are only good for a demo (see unsafe_settings)."""
    problems = unsafe_settings(config)
    if problems:
        raise RuntimeError(
            "ChargeShed refuses to start: " + " ".join(problems) + " For a local demo or tests set CHARGESHED_ENV=demo."
        )
