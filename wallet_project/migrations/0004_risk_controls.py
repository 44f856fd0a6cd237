"""
The risk controls: Operators trip circuit breakers, propose and approve (four eyes: never their own)
clearing them, changes to the blacklist and the lifting of reorg holds; both roles see the risk
rules' verdicts, the breakers and the blacklist they judge withdrawals by.
"""

from django.db import migrations

from wallet_project.roles import AUDITORS, OPERATORS, grant_operation

GRANTS = {
    AUDITORS: [
        "withdrawals.view_withdrawriskverdict",
        "controls.view_coinbreaker",
        "controls.view_blacklistaddress",
        "controls.view_addressbookentry",
    ],
    OPERATORS: [
        "withdrawals.view_withdrawriskverdict",
        "controls.view_coinbreaker",
        "controls.view_breakerlog",
        "controls.trip_coinbreaker",
        "controls.clear_coinbreaker",
        "controls.view_blacklistaddress",
        "controls.manage_blacklist",
        "controls.view_addressbookentry",
        "controls.view_addressbookpolicy",
        "controls.view_settingschange",
        "controls.decide_settingschange",
    ],
}


class Migration(migrations.Migration):
    dependencies = [
        ("wallet_project", "0003_operators_follow_payouts"),
        ("controls", "0001_initial"),
        ("withdrawals", "0010_risk_verdicts"),
    ]

    operations = [grant_operation(GRANTS)]
