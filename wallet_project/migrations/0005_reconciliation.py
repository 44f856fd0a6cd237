"""
Reconciliation and the house accounts: both roles see the reconciliation runs and the house's
balances and flows they check; Operators also see the treasury receipts (money from outside at
the exchange's own addresses) that the house books.
"""

from django.db import migrations

from wallet_project.roles import AUDITORS, OPERATORS, grant_operation

GRANTS = {
    AUDITORS: [
        "monitoring.view_reconciliationrun",
        "assets.view_housebalance",
        "assets.view_houseflow",
    ],
    OPERATORS: [
        "monitoring.view_reconciliationrun",
        "assets.view_housebalance",
        "assets.view_houseflow",
        "recharges.view_treasuryreceipt",
    ],
}


class Migration(migrations.Migration):
    dependencies = [
        ("wallet_project", "0004_risk_controls"),
        ("monitoring", "0005_reconciliation_run"),
        ("recharges", "0009_treasury_receipt"),
        ("assets", "0007_house_accounts"),
    ]

    operations = [grant_operation(GRANTS)]
