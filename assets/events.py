"""
The event schemas: the one home of the seed's message formats (section 4.2).

Every message is {"header": {message_id, topic, tags, keys, timestamp}, "body": {...}}; amounts
are strings so no consumer parses them as floats.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

WALLET_TOPIC = "wallet-topic"
ASSET_TOPIC = "asset-topic"
# The seed's queue counts: a user's messages always land on queue hash(user_id) % count.
TOPIC_QUEUE_COUNTS = {WALLET_TOPIC: 8, ASSET_TOPIC: 16}

TAG_ASSET_CHANGE = "ASSET_CHANGE"
TAG_WALLET_RECHARGE = "WALLET_RECHARGE"
TAG_WALLET_WITHDRAW = "WALLET_WITHDRAW"


def amount_str(value: Decimal) -> str:
    """Render an amount without exponent or trailing zeros ("0.001", "12")."""
    text = format(value.normalize(), "f")
    return text


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Header:
    message_id: str
    topic: str
    tags: str
    keys: str
    timestamp: int  # milliseconds since the epoch, as in the seed


@dataclass(frozen=True)
class Event:
    header: Header
    body: dict[str, Any] = field(default_factory=dict)
    partition_key: str = ""

    def as_dict(self) -> dict[str, Any]:
        # vars(), not dataclasses.asdict: the header holds only str and int, and asdict's deep copy
        # is a measurable share of a ledger posting.
        return {"header": dict(vars(self.header)), "body": self.body}


def _header(*, topic: str, tags: str, keys: str, at: datetime) -> Header:
    return Header(message_id=new_message_id(), topic=topic, tags=tags, keys=keys, timestamp=int(at.timestamp() * 1000))


def asset_changed(
    *,
    flow_no: str,
    user_id: int,
    coin_id: str,
    business_type: int,
    amount: Decimal,
    balance_before: Decimal,
    balance_after: Decimal,
    frozen_amount: Decimal,
    frozen_before: Decimal,
    frozen_after: Decimal,
    biz_ref: str,
    ref_tx_hash: str,
    at: datetime,
    debt_amount: Decimal = Decimal(0),
    debt_before: Decimal = Decimal(0),
    debt_after: Decimal = Decimal(0),
) -> Event:
    """
    ASSET_CHANGE (seed 4.2.2), with the frozen side, the debt side and the business reference added.

    The debt (what the user owes after a reorg took back more than the balance held) is shown as
    debt_amount (its signed change), debt_before and debt_after, always present ("0" for the
    postings that do not touch it). The user's net position is balance + frozen - debt.
    """
    body = {
        "flow_no": flow_no,
        "user_id": user_id,
        "coin_id": coin_id,
        "business_type": business_type,
        "amount": amount_str(amount),
        "balance_before": amount_str(balance_before),
        "balance_after": amount_str(balance_after),
        "ref_tx_hash": ref_tx_hash,
        "frozen_amount": amount_str(frozen_amount),
        "frozen_before": amount_str(frozen_before),
        "frozen_after": amount_str(frozen_after),
        "debt_amount": amount_str(debt_amount),
        "debt_before": amount_str(debt_before),
        "debt_after": amount_str(debt_after),
        "biz_ref": biz_ref,
    }
    header = _header(topic=ASSET_TOPIC, tags=TAG_ASSET_CHANGE, keys=flow_no, at=at)
    return Event(header=header, body=body, partition_key=str(user_id))


# House postings share one partition (a non-numeric key is partition 0), so they are published in order.
HOUSE_PARTITION_KEY = "house"


def house_changed(
    *,
    flow_no: str,
    account: str,
    coin_id: str,
    business_type: int,
    amount: Decimal,
    balance_before: Decimal,
    balance_after: Decimal,
    biz_ref: str,
    ref_tx_hash: str,
    at: datetime,
) -> Event:
    """
    ASSET_CHANGE of a house account: the exchange's own money. `user_id` is null and `account` names
    the house account, so a consumer that keeps user balances skips it by that field alone.
    """
    body = {
        "flow_no": flow_no,
        "user_id": None,
        "account": account,
        "coin_id": coin_id,
        "business_type": business_type,
        "amount": amount_str(amount),
        "balance_before": amount_str(balance_before),
        "balance_after": amount_str(balance_after),
        "ref_tx_hash": ref_tx_hash,
        "biz_ref": biz_ref,
    }
    header = _header(topic=ASSET_TOPIC, tags=TAG_ASSET_CHANGE, keys=flow_no, at=at)
    return Event(header=header, body=body, partition_key=HOUSE_PARTITION_KEY)


def wallet_recharge(
    *,
    recharge_no: str,
    user_id: int,
    coin_id: str,
    amount: Decimal,
    tx_hash: str,
    status: int,
    confirmations: int,
    at: datetime,
) -> Event:
    """WALLET_RECHARGE (seed 4.2.1)."""
    body = {
        "recharge_no": recharge_no,
        "user_id": user_id,
        "coin_id": coin_id,
        "amount": amount_str(amount),
        "tx_hash": tx_hash,
        "status": status,
        "confirmations": confirmations,
    }
    header = _header(topic=WALLET_TOPIC, tags=TAG_WALLET_RECHARGE, keys=recharge_no, at=at)
    return Event(header=header, body=body, partition_key=str(user_id))


def wallet_withdraw(
    *,
    withdraw_no: str,
    user_id: int,
    coin_id: str,
    amount: Decimal,
    fee: Decimal,
    actual_amount: Decimal,
    to_address: str,
    internal: bool,
    tx_hash: str | None,
    status: int,
    at: datetime,
) -> Event:
    """WALLET_WITHDRAW: a withdrawal's state change, in the shape of WALLET_RECHARGE."""
    body = {
        "withdraw_no": withdraw_no,
        "user_id": user_id,
        "coin_id": coin_id,
        "amount": amount_str(amount),
        "fee": amount_str(fee),
        "actual_amount": amount_str(actual_amount),
        "internal": internal,
        "to_address": to_address,
        "tx_hash": tx_hash or "",
        "status": status,
    }
    header = _header(topic=WALLET_TOPIC, tags=TAG_WALLET_WITHDRAW, keys=withdraw_no, at=at)
    return Event(header=header, body=body, partition_key=str(user_id))
