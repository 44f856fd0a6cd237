"""
Sweeps: Operators see the sweep jobs, pauses and their log, retry a failed sweep and pause or resume a
coin's sweeps; Auditors see the jobs (every network fee a sweep paid is the exchange's money).
"""

from django.db import migrations

from wallet_project.roles import AUDITORS, OPERATORS, grant_operation

GRANTS = {
    AUDITORS: ["sweeps.view_sweepjob"],
    OPERATORS: [
        "sweeps.view_sweepjob",
        "sweeps.view_sweeppause",
        "sweeps.view_sweepopslog",
        "sweeps.retry_sweepjob",
        "sweeps.pause_sweeps",
    ],
}


class Migration(migrations.Migration):
    dependencies = [
        ("wallet_project", "0006_treasury_hot_cold"),
        ("sweeps", "0001_initial"),
    ]

    operations = [grant_operation(GRANTS)]
