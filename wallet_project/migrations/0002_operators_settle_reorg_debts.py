"""Operators close reorg shortfalls: settle a debt the user paid back, or write it off."""

from django.db import migrations

from wallet_project.roles import OPERATORS, grant_operation

GRANTS = {
    OPERATORS: [
        "recharges.settle_accounthold",
        "recharges.write_off_accounthold",
    ],
}


class Migration(migrations.Migration):
    dependencies = [
        ("wallet_project", "0001_roles"),
        ("recharges", "0007_hold_debt_settle_write_off"),
    ]

    operations = [grant_operation(GRANTS)]
