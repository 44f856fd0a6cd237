"""An output of a payout spent by a transaction the payout did not sign trips the chain's circuit breakers."""

from __future__ import annotations

from chains.base import Spend
from controls import selectors as controls_selectors
from controls.models import BreakerSource, CoinBreaker
from monitoring.models import Alert
from recharges.tests.helpers import tick
from recharges.tests.test_utxo_scan import chain, hot_row, mine, txid  # noqa: F401
from utxos.models import BtcUtxo


def test_a_locked_output_spent_elsewhere_trips_the_btc_breaker(chain, now):  # noqa: F811
    hot_row("hot-3")
    paid, ours, theirs = txid(), txid(), txid()
    mine(chain, pays=[("hot-3", paid, 0, 9000)])
    tick(chain, now)
    BtcUtxo.objects.filter(txid=paid).update(locked_by="W-7", pending_txid=ours)

    mine(chain, spends=[Spend(paid, 0, theirs)])
    tick(chain, now)

    breaker = CoinBreaker.objects.get(coin_id="BTC")
    assert (breaker.tripped, breaker.source) == (True, BreakerSource.SCANNER)
    assert f"was spent by {theirs}" in breaker.reason
    assert controls_selectors.breakers_tripped() == {"BTC"}
    assert Alert.objects.get(kind="BREAKER_TRIPPED").subject == "coin BTC"


def test_positive_control_a_payouts_own_spend_trips_nothing(chain, now):  # noqa: F811
    hot_row("hot-4")
    paid, ours = txid(), txid()
    mine(chain, pays=[("hot-4", paid, 0, 9000)])
    tick(chain, now)
    BtcUtxo.objects.filter(txid=paid).update(locked_by="W-8", pending_txid=ours)

    mine(chain, spends=[Spend(paid, 0, ours)])
    tick(chain, now)

    assert BtcUtxo.objects.get(txid=paid).spent_txid == ours
    assert not CoinBreaker.objects.exists()
