# Production image: the same steps as scripts/bootstrap.sh and .ci/run (requirements-mysql.txt
# = requirements.txt + the MySQL driver), so CI proves what this file installs.
FROM python:3.11-slim-bookworm AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends default-libmysqlclient-dev pkg-config build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY requirements.txt requirements-mysql.txt ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/venv/bin/pip install --no-cache-dir -r requirements-mysql.txt

FROM python:3.11-slim-bookworm
# mariadb-client: mariadb-dump and mariadb for backup_create / backup_restore.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libmariadb3 curl mariadb-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app wallet
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY --chown=wallet:wallet . .
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    WALLET_ENV=production \
    WALLET_VAR_DIR=/app/var \
    BCL_DATA_DIR=/app/var/bitcoinlib \
    STATIC_ROOT=/app/static
# collectstatic reads settings only: the development profile needs no secret or database.
RUN WALLET_ENV=development WALLET_VAR_DIR=/tmp/build-var python manage.py collectstatic --noinput \
    && mkdir -p /app/var && chown -R wallet:wallet /app/var /app/static
USER wallet
EXPOSE 8083
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD curl -fsS http://127.0.0.1:8083/api/v1/wallet/health || exit 1
# web by default; the compose file and the Kubernetes manifests run worker, beat and relay from
# the same image with another command.
CMD ["gunicorn", "wallet_project.wsgi", "--bind", "0.0.0.0:8083", "--workers", "4", "--threads", "4", \
     "--access-logfile", "-", "--timeout", "30"]
