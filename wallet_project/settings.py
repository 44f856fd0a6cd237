"""
Settings of the wallet service, read from environment variables.

With no variable set the service runs on embedded defaults (SQLite under var/, a
filesystem Celery broker under var/, local-memory cache) so that a bare machine can start
it. Every variable is listed in the README with its default.
"""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("WALLET_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from None


def env_decimal(name: str, default: str, *, minimum: str = "0") -> Decimal:
    raw = env_str(name, default) or default
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name} must be a decimal number, not {raw!r}") from None
    if not value.is_finite() or value < Decimal(minimum):
        raise ImproperlyConfigured(f"{name} must be a number of at least {minimum}, not {raw!r}")
    return value


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


# "development" runs on embedded defaults; "production" refuses to start without the
# secrets and services it needs.
WALLET_ENV = env_str("WALLET_ENV", "development")
if WALLET_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"WALLET_ENV must be development or production, not {WALLET_ENV!r}")
PRODUCTION = WALLET_ENV == "production"

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set in production")
    # A development-only key: it signs sessions and JWTs of a local demo and nothing else.
    SECRET_KEY = "dev-insecure-only-for-local-runs-" + "0" * 32

DEBUG = env_bool("DJANGO_DEBUG", not PRODUCTION)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "wallet_project",
    "django_prometheus",
    "rest_framework",
    "rest_framework_simplejwt",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "coins",
    "monitoring",
    "chains",
    "addresses",
    "assets",
    "utxos",
    "recharges",
    "withdrawals",
    "reserves",
    "controls",
    "treasury",
    "sweeps",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "wallet_project.logging.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's static files from gunicorn itself: no separate web server needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "wallet_project.urls"
WSGI_APPLICATION = "wallet_project.wsgi.application"
ASGI_APPLICATION = "wallet_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ------------------------------------------------------------------------
# MySQL/MariaDB in production (mysql://user:pass@host:3306/name); SQLite by default.
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'wallet.sqlite3'}")
DATABASE_CONN_MAX_AGE = env_int("DATABASE_CONN_MAX_AGE", 60)


def _database(url: str) -> dict:
    config = dj_database_url.parse(url, conn_max_age=DATABASE_CONN_MAX_AGE, conn_health_checks=True)
    if config["ENGINE"] == "django.db.backends.mysql":
        # Django's MySQL backend with one round trip less per transaction (see its docstring).
        config["ENGINE"] = "wallet_project.db_backends.mysql"
        config.setdefault("OPTIONS", {}).update(
            {
                "charset": "utf8mb4",
                # Django's MySQL default; the ledger's lock-then-read relies on it.
                "isolation_level": "read committed",
                "init_command": "SET sql_mode='STRICT_TRANS_TABLES'",
            }
        )
        config["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
        # Separate test databases let several test runs share one server.
        if os.environ.get("DATABASE_TEST_NAME"):
            config["TEST"]["NAME"] = os.environ["DATABASE_TEST_NAME"]
    elif config["ENGINE"] == "django.db.backends.sqlite3":
        # SQLite serialises writers; waiting beats failing with "database is locked".
        config.setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
        config["CONN_MAX_AGE"] = 0
    return config


DATABASES = {"default": _database(DATABASE_URL)}
# Reports (monitoring read models) may read from a replica; money never does.
DATABASE_REPLICA_URL = env_str("DATABASE_REPLICA_URL", "")
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = _database(DATABASE_REPLICA_URL)
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["wallet_project.db_router.ReadReplicaRouter"]
if PRODUCTION and DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    raise ImproperlyConfigured("production needs DATABASE_URL pointing at MySQL")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ---------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "wallet"),
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 2,
                "SOCKET_TIMEOUT": 2,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery --------------------------------------------------------------------------
# The embedded default is kombu's filesystem transport: web, worker and beat processes of one
# machine share it with nothing installed. Production: redis:// or amqp://.
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # Broadcast (pidbox) exchanges; kombu's default is a "control" folder in the working directory.
        "control_folder": str(BROKER_DIR / "control"),
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Workers log through LOGGING below (JSON, redacted) instead of Celery's own handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Time ----------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Withdrawals paid on chain: the hot wallet pool (wallet_type) that pays them, how many are
# signed per run, and when an unmined one is alerted as stuck.
WITHDRAW_HOT_WALLET_TYPE = env_str("WITHDRAW_HOT_WALLET_TYPE", "withdraw")
# The hot wallet pool that tops up gas (ETH) and energy/bandwidth (TRX) of deposit addresses before a sweep.
GAS_STATION_WALLET_TYPE = env_str("GAS_STATION_WALLET_TYPE", "gas")
# Chains whose withdrawals beat pays on chain (ETH and TRON with their tokens, BTC from the UTXO set).
WITHDRAW_ONCHAIN_CHAINS = [c for c in env_str("WITHDRAW_ONCHAIN_CHAINS", "ETH,TRON,BTC").split(",") if c]
WITHDRAW_PAY_BATCH = env_int("WITHDRAW_PAY_BATCH", 20)
# EVM payouts signed in one run are sent in JSON-RPC batches of this many (after their commits).
WITHDRAW_EVM_SEND_BATCH = env_int("WITHDRAW_EVM_SEND_BATCH", 50)
# EVM ether payouts to recipients without code signed together in one database transaction (evm_group).
WITHDRAW_EVM_SIGN_GROUP = env_int("WITHDRAW_EVM_SIGN_GROUP", 50)
# How long a signed TRON withdrawal stays valid; past it, an unmined one is signed again.
WITHDRAW_TRON_EXPIRATION_SECONDS = env_int("WITHDRAW_TRON_EXPIRATION_SECONDS", 60)
# An unmined payout is alerted after this; on EVM it is replaced (same nonce, higher fee) too.
WITHDRAW_STUCK_SECONDS = env_int("WITHDRAW_STUCK_SECONDS", 1800)
# EVM payout fees (README "Payout fees"). EIP-1559 where the latest block has a base fee:
# max fee = base fee x multiplier + priority fee, the node's priority fee kept within floor and
# ceiling; legacy elsewhere at the node's gas price. Nothing is signed (and nothing replaced) above
# the max-fee ceiling: the withdrawal waits with a WITHDRAW_FEE_CEILING alert.
ETH_BASE_FEE_MULTIPLIER = env_decimal("ETH_BASE_FEE_MULTIPLIER", "2", minimum="1")
ETH_PRIORITY_FEE_FLOOR_WEI = env_int("ETH_PRIORITY_FEE_FLOOR_WEI", 1_000_000_000)
ETH_PRIORITY_FEE_CEILING_WEI = env_int("ETH_PRIORITY_FEE_CEILING_WEI", 10_000_000_000)
ETH_MAX_FEE_PER_GAS_CEILING_WEI = env_int("ETH_MAX_FEE_PER_GAS_CEILING_WEI", 500_000_000_000)
# Estimated gas times this (token transfers, transfers to contracts); a plain transfer is 21,000.
ETH_GAS_LIMIT_MARGIN = env_decimal("ETH_GAS_LIMIT_MARGIN", "1.25", minimum="1")
# A stuck payout's replacement raises both fee fields by at least this (geth and ganache need 10).
ETH_REPLACEMENT_BUMP_PERCENT = env_decimal("ETH_REPLACEMENT_BUMP_PERCENT", "12.5", minimum="10")
# BTC payouts (README "BTC payouts"): approved withdrawals share one transaction, at most
# WITHDRAW_BTC_BATCH_MAX outputs; a batch is signed once it is full or its oldest withdrawal has
# waited WITHDRAW_BTC_BATCH_WAIT_SECONDS (0: every run pays what is approved). The fee rate is
# estimatesmartfee's (BTC_FEE_FALLBACK_SAT_VB when the node has none), at least the floor; above
# the ceiling nothing is signed (WITHDRAW_FEE_CEILING alert). A stuck payout's CPFP child lifts the
# package to the rate a new payout would pay now, and at least the parent's x BTC_CPFP_FEE_MULTIPLIER.
WITHDRAW_BTC_BATCH_MAX = env_int("WITHDRAW_BTC_BATCH_MAX", 20)
WITHDRAW_BTC_BATCH_WAIT_SECONDS = env_int("WITHDRAW_BTC_BATCH_WAIT_SECONDS", 60)
BTC_FEE_RATE_FLOOR_SAT_VB = env_int("BTC_FEE_RATE_FLOOR_SAT_VB", 1)
BTC_FEE_RATE_CEILING_SAT_VB = env_int("BTC_FEE_RATE_CEILING_SAT_VB", 500)
BTC_CPFP_FEE_MULTIPLIER = env_decimal("BTC_CPFP_FEE_MULTIPLIER", "2", minimum="1")
# TRC20 payouts: fee_limit = estimated energy x energy price x this margin, at most TRON_FEE_LIMIT_SUN.
TRON_ENERGY_MARGIN = env_decimal("TRON_ENERGY_MARGIN", "1.2", minimum="1")
# Sweeps (README "Sweeps"): deposit addresses emptied into the hot pool SWEEP_HOT_WALLET_TYPE every
# SWEEP_INTERVAL_SECONDS on SWEEP_CHAINS, at most SWEEP_BATCH open jobs moved on per run. A token
# sweep's gas (energy) top-up is its estimate x the current fee x SWEEP_TOPUP_MARGIN. BTC deposit
# outputs are consolidated only while the node's fee estimate is at most SWEEP_BTC_MAX_FEE_RATE_SAT_VB,
# at most SWEEP_BTC_MAX_INPUTS of them in one transaction.
SWEEP_CHAINS = [c for c in env_str("SWEEP_CHAINS", "BTC,ETH,TRON").split(",") if c]
SWEEP_INTERVAL_SECONDS = env_int("SWEEP_INTERVAL_SECONDS", 300)
SWEEP_HOT_WALLET_TYPE = env_str("SWEEP_HOT_WALLET_TYPE", WITHDRAW_HOT_WALLET_TYPE)
SWEEP_BATCH = env_int("SWEEP_BATCH", 500)
# Threads of one run moving different addresses' jobs on at once (each with its database connection).
SWEEP_WORKERS = env_int("SWEEP_WORKERS", 4)
SWEEP_TOPUP_MARGIN = env_decimal("SWEEP_TOPUP_MARGIN", "1.2", minimum="1")
SWEEP_BTC_MAX_FEE_RATE_SAT_VB = env_int("SWEEP_BTC_MAX_FEE_RATE_SAT_VB", 10)
SWEEP_BTC_MAX_INPUTS = env_int("SWEEP_BTC_MAX_INPUTS", 200)
# Withdrawal risk rules (withdrawals.risk_rules); their amount thresholds are per coin in coin_config
# (risk_first_address_amount, risk_velocity_amount). A new address-book entry can be withdrawn to,
# and "address book only" switched off, this long after it was asked for.
RISK_ADDRESS_BOOK_COOLING_SECONDS = env_int("RISK_ADDRESS_BOOK_COOLING_SECONDS", 86400)
# Velocity: more than RISK_VELOCITY_MAX_COUNT withdrawals (0: no count limit), or more than the
# coin's risk_velocity_amount, of one coin by one user within the window goes to review.
RISK_VELOCITY_WINDOW_MINUTES = env_int("RISK_VELOCITY_WINDOW_MINUTES", 60)
RISK_VELOCITY_MAX_COUNT = env_int("RISK_VELOCITY_MAX_COUNT", 10)
# A withdrawal larger than this share of the coin's hot balance goes to review, with an alert (0: off).
RISK_HOT_SHARE_MAX = env_decimal("RISK_HOT_SHARE_MAX", "0.5")
# Daily withdrawal limits reset at midnight of this zone.
WALLET_BUSINESS_TIME_ZONE = env_str("WALLET_BUSINESS_TIME_ZONE", "Asia/Shanghai")

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
if STATIC_ROOT.is_relative_to(VAR_DIR):
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- API -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "wallet_project.auth.CachedUserJWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "wallet_project.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    # Decimals travel as strings: a JSON number would lose precision in many clients.
    "COERCE_DECIMAL_TO_STRING": True,
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JWT_REFRESH_DAYS", 1)),
    "SIGNING_KEY": env_str("JWT_SIGNING_KEY", "") or SECRET_KEY,
    "AUTH_HEADER_TYPES": ("Bearer",),
    # A password change revokes every access and refresh token issued before it.
    "CHECK_REVOKE_TOKEN": True,
}
# Seconds the API remembers a token's user row (0: load it on every request).
AUTH_USER_CACHE_SECONDS = env_int("AUTH_USER_CACHE_SECONDS", 10)
# Failed logins (API token and admin) are counted in the cache (Redis: shared by every worker) per
# username and per client address; at the limit, logins are refused until the window that began
# with the first failure ends. Why these limits: wallet_project/login_throttle.py. 0 = no limit.
LOGIN_THROTTLE_WINDOW_SECONDS = env_int("LOGIN_THROTTLE_WINDOW_SECONDS", 900)
LOGIN_FAILURES_PER_USERNAME = env_int("LOGIN_FAILURES_PER_USERNAME", 10)
LOGIN_FAILURES_PER_ADDRESS = env_int("LOGIN_FAILURES_PER_ADDRESS", 100)
# Reverse proxies in front of the web workers whose X-Forwarded-For is trusted (0: none, use the peer).
LOGIN_TRUSTED_PROXIES = env_int("LOGIN_TRUSTED_PROXIES", 0)
SPECTACULAR_SETTINGS = {
    "TITLE": "Wallet service API",
    "DESCRIPTION": "Deposit addresses, deposits, withdrawals, balances and flows of an exchange's custodial wallet.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    # Swagger UI from the application's static files (drf-spectacular-sidecar), never from a CDN:
    # the docs work offline and no third-party script runs in a wallet's pages.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Security ------------------------------------------------------------------------
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# --- Logging -------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOG_FORMAT = env_str("LOG_FORMAT", "json")  # json (for ELK) or text
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "wallet_project.logging.ContextFilter"},
        "redact": {"()": "wallet_project.logging.RedactingFilter"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(task_id)s",
            "rename_fields": {"asctime": "timestamp", "levelname": "level", "name": "logger"},
        },
        "text": {
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s%(task_id)s] %(message)s",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context", "redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "celery": {"level": LOG_LEVEL},
    },
}

# --- Wallet --------------------------------------------------------------------------
# Open alerts of the same kind and subject are merged instead of repeated.
ALERT_DEDUP_OPEN = True


def env_chain_ints(name: str, default: str) -> dict[str, int]:
    """Parse "BTC:3600,ETH:300" into {"BTC": 3600, "ETH": 300}; "*:N" is every other chain's value."""
    values = {}
    for item in env_list(name, default):
        chain, sep, number = item.partition(":")
        if not sep or not number.strip().isdigit():
            raise ImproperlyConfigured(f"{name} must look like BTC:3600,ETH:300, not {item!r}")
        values[chain.strip()] = int(number)
    return values


# --- Alerts: delivery to people (monitoring.delivery) --------------------------------
# A signed webhook (HMAC-SHA256 over "timestamp.body", header X-Wallet-Signature) and email,
# each taking the severities listed. A channel without its URL / recipients is off.
ALERT_WEBHOOK_URL = env_str("ALERT_WEBHOOK_URL", "")
# Comma-separated during a rotation: every secret listed signs (one v1= each). Never logged.
ALERT_WEBHOOK_SECRET = env_str("ALERT_WEBHOOK_SECRET", "")
if ALERT_WEBHOOK_URL and not ALERT_WEBHOOK_SECRET:
    raise ImproperlyConfigured("ALERT_WEBHOOK_URL needs ALERT_WEBHOOK_SECRET: receivers must be able to verify")
ALERT_WEBHOOK_SEVERITIES = env_list("ALERT_WEBHOOK_SEVERITIES", "warning,critical")
ALERT_WEBHOOK_TIMEOUT_SECONDS = env_int("ALERT_WEBHOOK_TIMEOUT_SECONDS", 5)
ALERT_EMAIL_TO = env_list("ALERT_EMAIL_TO", "")
ALERT_EMAIL_SEVERITIES = env_list("ALERT_EMAIL_SEVERITIES", "critical")
ALERT_EMAIL_FROM = env_str("ALERT_EMAIL_FROM", "wallet-alerts@localhost")
# Attempts before a delivery is given up (and ALERT_DELIVERY_FAILED raised); the wait after the
# n-th failure is BACKOFF * 2^(n-1), at most BACKOFF_MAX.
ALERT_DELIVERY_MAX_ATTEMPTS = env_int("ALERT_DELIVERY_MAX_ATTEMPTS", 12)
ALERT_DELIVERY_BACKOFF_SECONDS = env_int("ALERT_DELIVERY_BACKOFF_SECONDS", 30)
ALERT_DELIVERY_BACKOFF_MAX_SECONDS = env_int("ALERT_DELIVERY_BACKOFF_MAX_SECONDS", 3600)
ALERT_DELIVERY_INTERVAL_SECONDS = env_int("ALERT_DELIVERY_INTERVAL_SECONDS", 15)
# Messages link to the alert's admin page under this URL (empty: no link).
ALERT_ADMIN_BASE_URL = env_str("ALERT_ADMIN_BASE_URL", "")
# Django's mail: a file per message under var/mail in development, SMTP in production.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.filebased.EmailBackend",
)
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)

# --- Reconciliation (monitoring.reconciliation, beat task reconcile per coin) --------
# How often each coin is reconciled (ledger against itself, and against the chain).
RECONCILE_INTERVAL_SECONDS = env_int("RECONCILE_INTERVAL_SECONDS", 600)
# The ledger check reads every flow of the coin this often; the runs between read only the
# users with new flows (a flow id above the last checked, or created within RECONCILE_LATE_FLOW_SECONDS
# before the previous run started: a transaction that committed late with a lower id).
RECONCILE_FULL_EVERY_SECONDS = env_int("RECONCILE_FULL_EVERY_SECONDS", 86400)
RECONCILE_LATE_FLOW_SECONDS = env_int("RECONCILE_LATE_FLOW_SECONDS", 600)
# Blocks an account chain (ETH, TRON) may be ahead of the scanner for a run: the run reads those
# blocks itself for transfers arriving at the exchange's addresses; further behind, it waits.
RECONCILE_MAX_GAP_BLOCKS = env_int("RECONCILE_MAX_GAP_BLOCKS", 200)


def _tolerances(raw: list[str]) -> dict[str, Decimal]:
    found = {}
    for item in raw:
        coin_id, sep, amount = item.partition(":")
        try:
            value = Decimal(amount.strip())
        except ArithmeticError:
            value = Decimal(-1)
        if not sep or not value.is_finite() or value < 0:
            raise ImproperlyConfigured(f"RECONCILE_TOLERANCES must look like BTC:0.00001,ETH:0, not {item!r}")
        found[coin_id.strip()] = value
    return found


# The difference a coin may show before reconciliation alerts and trips its breaker, in whole
# coins ("BTC:0.00001,ETH:0"); a coin not listed tolerates none.
RECONCILE_TOLERANCES = _tolerances(env_list("RECONCILE_TOLERANCES", ""))

# --- Monitoring checks (monitoring.checks, beat task monitoring_check) ----------------
MONITORING_CHECK_SECONDS = env_int("MONITORING_CHECK_SECONDS", 60)
# NODE_STALE when a chain's tip has not moved for this long ("*" = chains not listed; 0 = off).
# Off by default in development: the local dev chains mine only when something is sent.
NODE_STALE_SECONDS = env_chain_ints("NODE_STALE_SECONDS", "BTC:3600,ETH:300,TRON:300,*:900" if PRODUCTION else "")
# SCANNER_LAG when the scanner is more than this many blocks behind the node's tip.
SCANNER_LAG_ALERT_BLOCKS = env_chain_ints("SCANNER_LAG_ALERT_BLOCKS", "BTC:3,ETH:30,TRON:60,*:30")
# WITHDRAW_REVIEW_OVERDUE when a withdrawal waits for an auditor longer than this.
WITHDRAW_REVIEW_ALERT_SECONDS = env_int("WITHDRAW_REVIEW_ALERT_SECONDS", 3600)
# Hot wallets' on-chain balances are read this often (their min/max per coin: treasury_hot_threshold).
HOT_BALANCE_REFRESH_SECONDS = env_int("HOT_BALANCE_REFRESH_SECONDS", 300)
# Chains whose hot balances are read from the node. BTC is left out by default: its balance call
# (scantxoutset) scans the whole UTXO set, minutes on mainnet, and bcoin has none; BTC's hot
# balances come from the UTXO set the scanner keeps.
HOT_BALANCE_CHAINS = env_list("HOT_BALANCE_CHAINS", "ETH,TRON")

# --- Treasury: hot surplus to cold ---------------------------------------------------------
# Chains whose hot addresses' surplus above max_balance is moved to cold by treasury transfers.
TREASURY_CHAINS = env_list("TREASURY_CHAINS", "BTC,ETH,TRON")
# Coins whose treasury transfers are approved at once (sent without waiting for ops); the others
# are proposed and wait for an operator's approval in the admin.
TREASURY_AUTO_SEND_COINS = env_list("TREASURY_AUTO_SEND_COINS", "")
# How often the treasury plans, sends and confirms its transfers (beat).
TREASURY_INTERVAL_SECONDS = env_int("TREASURY_INTERVAL_SECONDS", 300)
# After ops reject a transfer, the same hot address and coin get no new proposal for this long.
TREASURY_REPROPOSE_SECONDS = env_int("TREASURY_REPROPOSE_SECONDS", 86400)
# Which hot address of the withdraw pool pays a withdrawal: round_robin, balance or region (3.1.2).
WITHDRAW_HOT_WALLET_STRATEGY = env_str("WITHDRAW_HOT_WALLET_STRATEGY", "round_robin")

# --- Metrics (/metrics) ---------------------------------------------------------------
# Bearer token Prometheus sends (Authorization: Bearer ...). Empty: open in development,
# refused (403) in production.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
# Deposit and withdrawal figures cover what was created in this window.
METRICS_WINDOW_SECONDS = env_int("METRICS_WINDOW_SECONDS", 86400)

# --- Backups (monitoring.backups) -----------------------------------------------------
# Where backup_create and vault_export write (a directory per backup, each with its manifest).
BACKUP_DIR = Path(env_str("BACKUP_DIR", str(VAR_DIR / "backups")))
# The backup key (AES-256-GCM; base64 of 32 bytes) comes from BACKUP_KEY or the file
# BACKUP_KEY_FILE; never the key-encryption key of the vault. Its value is never kept in settings.
BACKUP_KEY_FILE = env_str("BACKUP_KEY_FILE", "")
# backup_create keeps this many database backups (and vault exports) in BACKUP_DIR; 0 keeps all.
BACKUP_KEEP = env_int("BACKUP_KEEP", 14)
# BACKUP_OVERDUE when no database backup finished for this long (0: never alerted).
BACKUP_MAX_AGE_HOURS = env_int("BACKUP_MAX_AGE_HOURS", 26)

# --- Chains (chain adapters and dev nodes) -------------------------------------------
# Node endpoints per chain. The defaults are the local dev chains that
# `python -m chains.devnodes serve` starts (ganache 8545, bcoin regtest 18443, TRON fake 8090).
# BTC_RPC_URL carries the RPC credentials as user:password (bcoin: any user, the api key).
ETH_RPC_URL = env_str("ETH_RPC_URL", "http://127.0.0.1:8545/")
BTC_RPC_URL = env_str("BTC_RPC_URL", "http://wallet:devchain-only-api-key@127.0.0.1:18443/")
TRON_API_URL = env_str("TRON_API_URL", "http://127.0.0.1:8090/")
# mainnet, testnet or regtest: address prefixes accepted for BTC (bc, tb, bcrt/rb).
BTC_NETWORK = env_str("BTC_NETWORK", "regtest")
# Seconds to wait for a node before the adapter raises ChainError (connect, then read).
CHAIN_CONNECT_TIMEOUT = float(env_str("CHAIN_CONNECT_TIMEOUT", "2"))
CHAIN_READ_TIMEOUT = float(env_str("CHAIN_READ_TIMEOUT", "15"))
# Fee rates used when the node cannot estimate (quiet chain, estimatesmartfee answers -1).
BTC_FEE_FALLBACK_SAT_VB = env_int("BTC_FEE_FALLBACK_SAT_VB", 10)
ETH_GAS_PRICE_FALLBACK_WEI = env_int("ETH_GAS_PRICE_FALLBACK_WEI", 20_000_000_000)
# Credit ether that contracts pay to deposit addresses (a Safe, a batch payout): the scanner traces
# each block's transactions that run code (debug_traceTransaction): a node with the debug API only.
ETH_TRACE_INTERNAL_TRANSFERS = env_bool("ETH_TRACE_INTERNAL_TRANSFERS", False)
TRON_FEE_FALLBACK_SUN = env_int("TRON_FEE_FALLBACK_SUN", 1000)
# The exchange's BTC UTXO set: confirmations an output needs before a payout may spend it, and the
# most inputs one payout may spend (a consolidation is due when a payout needs more).
BTC_UTXO_MIN_CONFIRMATIONS = env_int("BTC_UTXO_MIN_CONFIRMATIONS", 1)
BTC_UTXO_MAX_INPUTS = env_int("BTC_UTXO_MAX_INPUTS", 100)
# TRC20 transfers: most TRX (in sun) a transfer may burn on energy: the ceiling of a payout's
# fee_limit (one estimated above it waits with a WITHDRAW_FEE_CEILING alert).
TRON_FEE_LIMIT_SUN = env_int("TRON_FEE_LIMIT_SUN", 30_000_000)
# Where the dev-chain command writes the deployed test contract addresses.
DEVCHAIN_FILE = Path(env_str("DEVCHAIN_FILE", str(VAR_DIR / "devchain.json")))

# --- Addresses (keys, derivation, address pool) --------------------------------------
# Bech32 prefix of BTC regtest addresses: Bitcoin Core uses bcrt, bcoin uses rb.
BTC_REGTEST_HRP = env_str("BTC_REGTEST_HRP", "bcrt")
# The key-encryption key (KEK) of the key vault comes from outside the database: WALLET_KEK
# (base64 of 32 bytes, or "version:base64" pairs separated by commas for rotation) and/or
# WALLET_KEK_FILE (a file holding the same text). Its value is never kept in settings.
WALLET_KEK_FILE = env_str("WALLET_KEK_FILE", "")
# Version used to encrypt new secrets; 0 means the highest version present.
WALLET_KEK_VERSION = env_int("WALLET_KEK_VERSION", 0)
if PRODUCTION and not os.environ.get("WALLET_KEK") and not WALLET_KEK_FILE:
    raise ImproperlyConfigured("production needs the key-encryption key: set WALLET_KEK or WALLET_KEK_FILE")
# Development only: without a KEK a throwaway one is generated here on first use.
WALLET_DEV_KEK_FILE = VAR_DIR / "DEV-ONLY-wallet-kek.txt"
# The beat task tops each chain's pool of unassigned deposit addresses up by ADDRESS_POOL_BATCH
# when fewer than ADDRESS_POOL_MIN are left.
ADDRESS_POOL_MIN = env_int("ADDRESS_POOL_MIN", 1000)
ADDRESS_POOL_BATCH = env_int("ADDRESS_POOL_BATCH", 5000)
ADDRESS_POOL_TOP_UP_SECONDS = env_int("ADDRESS_POOL_TOP_UP_SECONDS", 300)
# Merged into any schedule defined above; DatabaseScheduler copies it into the beat tables.
CELERY_BEAT_SCHEDULE = {
    **globals().get("CELERY_BEAT_SCHEDULE", {}),
    "addresses.address_pool_top_up": {
        "task": "addresses.tasks.address_pool_top_up",
        "schedule": ADDRESS_POOL_TOP_UP_SECONDS,
    },
}
# bitcoinlib writes a database and config under BCL_DATA_DIR on import (default ~/.bitcoinlib).
os.environ.setdefault("BCL_DATA_DIR", str(VAR_DIR / "bitcoinlib"))

# --- Deposits (block scanner, confirmations) -----------------------------------------
# Seconds between two beat ticks of each chain's scanner and confirmation task.
SCAN_INTERVAL_SECONDS = env_int("SCAN_INTERVAL_SECONDS", 30)
# Chains that get a scanner (beat schedules are made for these).
SCAN_CHAINS = env_list("SCAN_CHAINS", "BTC,ETH,TRON")
# Most blocks read per batch; a tick runs batches until caught up or SCAN_TICK_BUDGET_SECONDS.
SCAN_BATCH_BLOCKS = env_int("SCAN_BATCH_BLOCKS", 100)
SCAN_TICK_BUDGET_SECONDS = env_int("SCAN_TICK_BUDGET_SECONDS", 20)
# Hashes of the last N blocks are kept to find a fork point; a deeper reorg stops the chain's
# scanner with a critical alert. Keep it well above every coin's required_confirmations.
SCAN_RECENT_BLOCKS = env_int("SCAN_RECENT_BLOCKS", 256)
# Where a chain's scanner starts the first time, e.g. "ETH:0,BTC:0" (default: the node's tip).
SCAN_START_HEIGHTS = {
    chain.strip(): int(height) for chain, height in (item.split(":", 1) for item in env_list("SCAN_START_HEIGHTS", ""))
}
# The watch list of deposit addresses is refreshed incrementally each tick, reloaded in full
# this often; assignments younger than the look-back are re-read (late commits).
SCAN_WATCH_FULL_RELOAD_SECONDS = env_int("SCAN_WATCH_FULL_RELOAD_SECONDS", 600)
SCAN_WATCH_LOOKBACK_SECONDS = env_int("SCAN_WATCH_LOOKBACK_SECONDS", 600)
# Most distinct block heights whose hash the confirmation task re-checks per tick.
SCAN_CONFIRM_MAX_HEIGHTS = env_int("SCAN_CONFIRM_MAX_HEIGHTS", 200)

# --- Event relay (assets.relay) ------------------------------------------------------
# Where the outbox is published: amqp://... (RabbitMQ, the default in production and CI),
# redis://... (Redis Streams, small installs) or sqlite:///path (the embedded sink of a bare
# machine: the default in development when neither EVENT_BROKER_URL nor RABBITMQ_URL is set).
EVENT_BROKER_URL = env_str("EVENT_BROKER_URL", "") or env_str("RABBITMQ_URL", "")
if not EVENT_BROKER_URL:
    EVENT_BROKER_URL = (
        "amqp://guest:guest@127.0.0.1:5672//" if PRODUCTION else f"sqlite:///{VAR_DIR / 'events.sqlite3'}"
    )
# Prepended to exchange, queue and stream names (separate environments on one broker).
EVENT_EXCHANGE_PREFIX = env_str("EVENT_EXCHANGE_PREFIX", "")
# Relay partitions: a user's events belong to partition user_id % this; each relay process
# leases a share. A multiple of the largest queue count (16) keeps queues within one partition.
EVENT_RELAY_PARTITIONS = env_int("EVENT_RELAY_PARTITIONS", 16)
EVENT_RELAY_BATCH_SIZE = env_int("EVENT_RELAY_BATCH_SIZE", 500)
EVENT_RELAY_LEASE_SECONDS = env_int("EVENT_RELAY_LEASE_SECONDS", 30)
EVENT_RELAY_CONFIRM_TIMEOUT_SECONDS = env_int("EVENT_RELAY_CONFIRM_TIMEOUT_SECONDS", 5)
EVENT_RELAY_IDLE_MS = env_int("EVENT_RELAY_IDLE_MS", 200)
# An EVENT_RELAY_LAG alert is raised when the oldest pending event is older than this.
RELAY_LAG_ALERT_SECONDS = env_int("RELAY_LAG_ALERT_SECONDS", 60)
# Sent events are deleted from the outbox after this many days (prune_events).
EVENT_RETENTION_DAYS = env_int("EVENT_RETENTION_DAYS", 7)
# Consumers' dedupe records (assets.consumers) are kept this long.
EVENT_DEDUPE_TTL_SECONDS = env_int("EVENT_DEDUPE_TTL_SECONDS", 7 * 24 * 3600)
# Scanner tasks run on their own queue (the worker consumes "celery,scanner").
CELERY_TASK_ROUTES = {"recharges.tasks.*": {"queue": "scanner"}}
