"""Business metrics on /metrics: behind a bearer token, computed from the database at scrape time."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.utils import timezone
from eth_utils import to_checksum_address
from prometheus_client.parser import text_string_to_metric_families

from addresses import services as addresses_services
from addresses import signer
from addresses.models import AddressType, WalletAddress
from assets import services as assets_services
from assets.models import BusinessType
from coins.models import CoinConfig
from monitoring import balances
from monitoring import services as monitoring_services
from monitoring.models import Severity
from monitoring.tests.conftest import TEST_MNEMONIC
from recharges import services as recharges_services
from recharges import watchlist
from recharges.tests.fakechain import FakeChain, eth_address, transfer
from withdrawals import services as withdrawals_services

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "test-only-metrics-token"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
OUTSIDE = to_checksum_address("0x" + "5e" * 20)


@pytest.fixture(autouse=True)
def _metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.SCAN_START_HEIGHTS = {"ETH": 0}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    watchlist.watchlist_reset()
    yield
    watchlist.watchlist_reset()


def scrape(client) -> dict[str, dict[tuple, float]]:
    """Return {sample name: {labels: value}} of one authorised scrape."""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


class TestAccess:
    def test_refuses_a_scrape_without_the_token_or_with_another(self, client):
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer guess").status_code == 401
        assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200

    def test_production_without_a_token_serves_nothing(self, client, settings):
        settings.METRICS_TOKEN = ""
        settings.PRODUCTION = True

        response = client.get("/metrics")

        assert response.status_code == 403
        assert b"wallet_" not in response.content


class TestBusinessFigures:
    def test_deposits_latency_and_success(self, client):
        user = get_user_model().objects.create_user("alice", password="alice-password-1")
        address = WalletAddress.objects.create(
            coin_id="ETH", coin_name="ETH", chain_id="ETH", address_type=AddressType.USER_DEPOSIT,
            address=eth_address(7), user=user,
        )  # fmt: skip
        CoinConfig.objects.filter(chain_id="ETH").update(required_confirmations=3)
        chain = FakeChain("ETH")
        chain.mine([transfer(to=address.address, amount=10**18)], count=3)
        seen = timezone.now()
        recharges_services.deposits_scan_batch(chain_id="ETH", now=seen, adapter=chain)
        recharges_services.deposits_confirm(chain_id="ETH", now=seen + timedelta(seconds=90), adapter=chain)

        samples = scrape(client)

        assert value(samples, "wallet_deposits", status="confirmed") == 1
        assert value(samples, "wallet_deposit_success_ratio") == 1.0
        assert value(samples, "wallet_deposit_confirm_seconds_bucket", le="60.0") == 0
        assert value(samples, "wallet_deposit_confirm_seconds_bucket", le="120.0") == 1
        assert value(samples, "wallet_deposit_confirm_seconds_gcount") == 1
        assert 80 < value(samples, "wallet_deposit_confirm_seconds_gsum") < 100
        assert value(samples, "wallet_scanner_lag_blocks", chain="ETH") == 0
        assert value(samples, "wallet_chain_tip_height", chain="ETH") == 3

    def test_withdrawals_review_queue_and_alerts(self, client):
        alice = get_user_model().objects.create_user("alice", password="alice-password-1")
        bob = get_user_model().objects.create_user("bob", password="bob-password-1")
        eth = CoinConfig.objects.get(coin_id="ETH")
        assets_services.balance_credit(
            user_id=alice.id, coin=eth, amount=Decimal(500), business_type=BusinessType.RECHARGE, biz_ref="fund"
        )
        bob_address = WalletAddress.objects.create(
            coin_id="ETH", coin_name="ETH", chain_id="ETH", address_type=AddressType.USER_DEPOSIT,
            address=to_checksum_address(eth_address(8)), user=bob,
        )  # fmt: skip
        withdrawals_services.withdrawal_apply(
            user_id=alice.id, coin_id="ETH", to_address=bob_address.address, amount="1", idempotency_key="internal"
        )  # settled in the ledger at once: completed
        withdrawals_services.withdrawal_apply(
            user_id=alice.id, coin_id="ETH", to_address=OUTSIDE, amount="50", idempotency_key="big"
        )  # above the audit threshold: waits for review
        monitoring_services.alert_raise_alone(kind="WITHDRAW_STUCK", subject="withdrawal W1", message="x")
        monitoring_services.alert_raise_alone(kind="NODE_DOWN", subject="chain ETH", message="x")
        monitoring_services.alert_raise_alone(
            severity=Severity.WARNING, kind="NODE_DOWN", subject="chain BTC", message="x"
        )

        samples = scrape(client)

        assert value(samples, "wallet_withdrawals", status="completed") == 1
        assert value(samples, "wallet_withdrawals", status="pending_review") == 1
        assert value(samples, "wallet_withdrawal_success_ratio") == 1.0
        assert value(samples, "wallet_withdrawal_processing_seconds_gcount") == 1
        assert value(samples, "wallet_withdraw_review_queue_size") == 1
        assert value(samples, "wallet_withdraw_review_oldest_age_seconds") >= 0
        assert value(samples, "wallet_payouts", chain="ETH", status="completed") == 0  # internal: not a payout
        assert value(samples, "wallet_sweeps") == 0
        assert value(samples, "wallet_alerts_open", severity="critical") == 1
        assert value(samples, "wallet_alerts_open", severity="warning") == 2
        assert value(samples, "wallet_alerts_open", severity="info") == 0

    def test_keeps_the_relay_and_request_metrics(self, client):
        samples = scrape(client)

        assert "wallet_event_relay_lag_seconds" in samples
        assert "django_http_requests_total_by_method_total" in samples


# --- deploy/: every metric the dashboard and the alerting rules use is on /metrics --------------------

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
# Series Prometheus makes itself rather than scraping them.
PROMETHEUS_MADE = {"up"}


def metric_names(expr: str) -> set[str]:
    """Return the metric names a PromQL expression reads (label matchers, groupings, ranges, functions removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # groupings
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("("):  # a function
            continue
        if match.group() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def deploy_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "wallet-overview.json").read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "wallet-alerts.yml").read_text())
    expressions += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    return expressions


def test_the_metric_name_extraction_keeps_names_and_drops_the_rest():
    expr = 'histogram_quantile(0.95, sum by (le, view) (rate(a_bucket{status=~"5.."}[5m]))) / b > 0.2 and on (x) c'

    assert metric_names(expr) == {"a_bucket", "b", "c"}


def test_every_metric_of_the_dashboard_and_the_alerting_rules_is_on_metrics(client, settings, test_kek):
    settings.HOT_BALANCE_CHAINS = ["ETH"]

    class HotNode:  # the outside world: a node answering balances
        def balance(self, address: str, contract: str | None = None) -> int:
            return 5 * 10**18 if contract is None else 100 * 10**6

    signer.hd_wallet_create(chain_id="ETH", purpose=AddressType.HOT, mnemonic=TEST_MNEMONIC, label="test-only")
    addresses_services.hot_addresses_create(chain_id="ETH", wallet_type="withdraw", count=1)
    balances.hot_balances_refresh(adapters={"ETH": HotNode()})
    chain = FakeChain("ETH")
    chain.mine(count=2)
    recharges_services.deposits_scan_batch(chain_id="ETH", now=timezone.now(), adapter=chain)
    client.get("/api/v1/wallet/health")  # a request, so the per-request series exist
    client.get("/api/v1/wallet/nowhere")

    samples = scrape(client)
    expressions = deploy_expressions()
    used = set().union(*(metric_names(expr) for expr in expressions)) - PROMETHEUS_MADE

    assert len(expressions) >= 25
    assert {name for name in used if not name.startswith(("wallet_", "django_"))} == set()
    assert sorted(used - set(samples)) == []
    assert (
        value(
            samples,
            "wallet_hot_balance",
            chain="ETH",
            coin="ETH",
            address=WalletAddress.objects.get(address_type=AddressType.HOT).address,
        )
        == 5.0
    )
