"""Template filters of the back office's pages."""

from __future__ import annotations

from decimal import Decimal

from django import template

from wallet_project.display import amount_display

register = template.Library()


@register.filter
def coin_amount(value: Decimal | None) -> str:
    """{{ record.amount|coin_amount }}: the amount at its coin's precision, never rounded (display.amount_display)."""
    return amount_display(value)
