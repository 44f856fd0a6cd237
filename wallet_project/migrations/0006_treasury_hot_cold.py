"""
The treasury's hot and cold wallets: Operators register watch-only cold addresses, propose and
approve (four eyes: never their own) a hot address's min/max balance, and approve or reject the
transfers of hot surplus to cold; they see the thresholds, the transfers and their logs.
"""

from django.db import migrations

from wallet_project.roles import OPERATORS, grant_operation

GRANTS = {
    OPERATORS: [
        "addresses.register_cold_address",
        "treasury.view_hotthreshold",
        "treasury.set_hot_threshold",
        "treasury.view_treasurytransfer",
        "treasury.view_treasurytransferlog",
        "treasury.approve_treasurytransfer",
    ],
}


class Migration(migrations.Migration):
    dependencies = [
        ("wallet_project", "0005_reconciliation"),
        ("addresses", "0006_hot_regions_cold_registration"),
        ("treasury", "0002_thresholds_from_address_rows"),
    ]

    operations = [grant_operation(GRANTS)]
