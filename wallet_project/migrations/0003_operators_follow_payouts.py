"""Operators follow payouts (each on-chain payment, its transactions and the withdrawals it pays)
and re-sign one whose nonce another transaction took (alert WITHDRAW_NONCE_TAKEN)."""

from django.db import migrations

from wallet_project.roles import OPERATORS, grant_operation

GRANTS = {
    OPERATORS: [
        "withdrawals.view_payout",
        "withdrawals.view_payouttx",
        "withdrawals.view_payoutwithdrawal",
        "withdrawals.resign_payout",
    ],
}


class Migration(migrations.Migration):
    dependencies = [
        ("wallet_project", "0002_operators_settle_reorg_debts"),
        ("withdrawals", "0008_payout_tables"),
    ]

    operations = [grant_operation(GRANTS)]
