"""
The back office's two roles, Auditors and Operators, each with exactly what its job needs.

Neither role has an add, change or delete permission of any table: every state change is an
action with its own permission (tests/test_roles.py holds both lists and that rule).
"""

from django.db import migrations

from wallet_project.roles import AUDITORS, OPERATORS, grant_operation

GRANTS = {
    # Auditors decide withdrawals above the audit threshold: the withdrawal, its audit trail, and
    # the applicant's balances, flows and deposits to judge it by.
    AUDITORS: [
        "withdrawals.view_withdrawrecord",
        "withdrawals.view_withdrawauditlog",
        "withdrawals.audit_withdrawrecord",
        "assets.view_balance",
        "assets.view_flow",
        "recharges.view_rechargerecord",
    ],
    # Operators keep the money moving: alerts, reorg holds, held deposits, rescans, addresses,
    # payouts in flight, the event outbox and the coins' settings (read-only: a coin's settings
    # are changed by whoever holds coins.change_coinconfig, which neither role does).
    OPERATORS: [
        "monitoring.view_alert",
        "monitoring.acknowledge_alert",
        "recharges.view_accounthold",
        "recharges.view_rechargerecord",
        "recharges.release_rechargerecord",
        "recharges.view_scancursor",
        "recharges.view_recentblock",
        "recharges.rescan_blocks",
        "addresses.view_walletaddress",
        "addresses.view_addressstatuschange",
        "addresses.change_address_status",
        "coins.view_coinconfig",
        "chains.view_noncecursor",
        "withdrawals.view_withdrawrecord",
        "assets.view_balance",
        "assets.view_flow",
        "assets.view_outboxmessage",
    ],
}


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        # The migrations that define the permissions granted here.
        ("addresses", "0003_address_status_change"),
        ("assets", "0003_drop_unused_outbox_index"),
        ("chains", "0001_nonce_cursor"),
        ("coins", "0004_native_coin"),
        ("monitoring", "0002_acknowledge_permission_and_remark"),
        ("recharges", "0005_rescan_permission"),
        ("withdrawals", "0004_onchain_payment"),
    ]

    operations = [grant_operation(GRANTS)]
