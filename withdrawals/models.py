"""withdraw_record: the seed's withdrawal table and its state machine, plus the audit log."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from coins.models import AMOUNT, CoinConfig
from wallet_project.db import ExactCharField


class WithdrawStatus(models.IntegerChoices):
    PENDING_REVIEW = 1, "pending review"
    APPROVED = 2, "approved"
    REJECTED = 3, "rejected"
    PROCESSING = 4, "processing"
    COMPLETED = 5, "completed"
    FAILED = 6, "failed"
    # The owner withdrew the request before any auditor decided and before anything was signed.
    # Not REJECTED: a rejection is an auditor's decision with a reason, counted as a risk signal.
    CANCELLED = 7, "cancelled"


class WithdrawRecord(models.Model):
    withdraw_no = ExactCharField(max_length=32, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, db_column="user_id")
    coin = models.ForeignKey(CoinConfig, on_delete=models.PROTECT, to_field="coin_id", db_column="coin_id")
    coin_name = models.CharField(max_length=50)
    to_address = models.CharField(max_length=255)
    amount = models.DecimalField(**AMOUNT)
    fee = models.DecimalField(**AMOUNT)
    actual_amount = models.DecimalField(**AMOUNT)
    status = models.SmallIntegerField(choices=WithdrawStatus.choices, default=WithdrawStatus.PENDING_REVIEW)
    tx_hash = models.CharField(max_length=255, null=True, blank=True)
    confirmations = models.IntegerField(default=0, null=True)
    required_confirmations = models.IntegerField(default=6)
    audit_user = models.CharField(max_length=32, null=True, blank=True)
    audit_time = models.DateTimeField(null=True, blank=True)
    audit_remark = models.CharField(max_length=500, null=True, blank=True)
    block_number = models.BigIntegerField(null=True, blank=True)
    block_time = models.DateTimeField(null=True, blank=True)
    memo = models.CharField(max_length=255, null=True, blank=True)
    idempotency_key = ExactCharField(max_length=64)
    # On-chain payment: the hot address paying. Its transactions are in payout / payout_tx;
    # tx_hash and block_number show the user the current one (the mined one once it is mined).
    from_address = models.CharField(max_length=255, null=True, blank=True)
    # Fixed when applied for (1 or 2, from the coin's thresholds then): a later change of the
    # thresholds does not lower what this withdrawal needs.
    approvals_required = models.PositiveSmallIntegerField(default=1)
    # Set when to_address is another user's deposit address: settled in the ledger, off chain.
    to_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_column="to_user_id",
    )
    create_time = models.DateTimeField(auto_now_add=True)
    update_time = models.DateTimeField(auto_now=True)
    complete_time = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "withdraw_record"
        verbose_name = "withdrawal"
        verbose_name_plural = "withdrawals"
        permissions = [("audit_withdrawrecord", "Can approve or reject withdrawals")]
        constraints = [
            models.UniqueConstraint(fields=["user", "idempotency_key"], name="uk_withdraw_user_idempotency"),
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="withdraw_amount_positive"),
            models.CheckConstraint(condition=models.Q(fee__gte=0), name="withdraw_fee_not_negative"),
        ]
        indexes = [
            models.Index(fields=["user"], name="idx_withdraw_user_id"),
            models.Index(fields=["coin"], name="idx_withdraw_coin_id"),
            models.Index(fields=["status"], name="idx_withdraw_status"),
            models.Index(fields=["create_time"], name="idx_withdraw_create_time"),
        ]

    def __str__(self) -> str:
        return self.withdraw_no


class WithdrawAuditLog(models.Model):
    """Every decision on a withdrawal, append-only: who, when, from which state to which, why."""

    withdraw = models.ForeignKey(WithdrawRecord, on_delete=models.PROTECT, related_name="audit_logs")
    auditor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=32)
    from_status = models.SmallIntegerField(choices=WithdrawStatus.choices)
    to_status = models.SmallIntegerField(choices=WithdrawStatus.choices)
    remark = models.CharField(max_length=500, blank=True, default="")
    create_time = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "withdraw_audit_log"
        verbose_name = "withdrawal decision"
        verbose_name_plural = "withdrawal audit log"
        indexes = [models.Index(fields=["withdraw", "id"], name="idx_withdraw_audit_withdraw")]

    def __str__(self) -> str:
        return f"{self.withdraw_id} {self.action}"


class PayoutStatus(models.TextChoices):
    OPEN = "OPEN", "open"  # signed; one of its transactions may still be mined
    COMPLETED = "COMPLETED", "completed"  # one of its transactions mined, succeeded and settled
    FAILED = "FAILED", "failed"  # its mined transaction reverted or paid nobody: settled as failed


class PayoutTxKind(models.TextChoices):
    ORIGINAL = "ORIGINAL", "original"
    REPLACEMENT = "REPLACEMENT", "replacement"  # EVM: same nonce, higher fee (BTC: replace-by-fee)
    RESIGN = "RESIGN", "re-signed"  # a new transaction once the old ones provably can never be mined
    CPFP_CHILD = "CPFP_CHILD", "CPFP child"  # BTC: spends the payout's change to pay for it


class PayoutTxStatus(models.TextChoices):
    SIGNED = "SIGNED", "signed"  # stored, not taken by a node yet
    BROADCAST = "BROADCAST", "broadcast"  # a node took it; in no block (as last seen)
    MINED = "MINED", "mined"  # in block block_number (as last seen; a reorg puts it back)
    DROPPED = "DROPPED", "dropped"  # can never be mined: another of the payout's transactions was
    FAILED = "FAILED", "failed"  # mined, reverted or paid nobody


class Payout(models.Model):
    """
    One on-chain payment intention: what a hot address pays to one or more withdrawals.

    Its transactions (payout_tx) are the ways it may be mined; exactly one of them settles it.
    EVM: every transaction carries `nonce` (a replacement the same one, an ops re-sign a new one).
    """

    chain_id = models.CharField(max_length=32)
    coin = models.ForeignKey(CoinConfig, on_delete=models.PROTECT, to_field="coin_id", db_column="coin_id")
    from_address = models.CharField(max_length=255)
    nonce = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=PayoutStatus.choices, default=PayoutStatus.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    # When the confirm job first saw another transaction take this payout's nonce (EVM): that
    # first sighting trips the chain's circuit breakers, later ones only alert.
    nonce_taken_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "payout"
        permissions = [("resign_payout", "Can re-sign a payout whose nonce another transaction took")]
        constraints = [
            # Two payouts never share a nonce of one address (NULL nonces, TRON and BTC, are distinct).
            models.UniqueConstraint(fields=["chain_id", "from_address", "nonce"], name="uk_payout_nonce"),
        ]
        indexes = [
            models.Index(fields=["chain_id", "status"], name="idx_payout_chain_status"),
            models.Index(fields=["from_address", "status"], name="idx_payout_from_status"),
        ]

    def __str__(self) -> str:
        return f"payout {self.id} {self.chain_id} {self.status}"


class PayoutTx(models.Model):
    """A signed transaction of a payout, stored before any node sees it; every retry sends it again."""

    payout = models.ForeignKey(Payout, on_delete=models.PROTECT, related_name="txs")
    kind = models.CharField(max_length=16, choices=PayoutTxKind.choices)
    status = models.CharField(max_length=16, choices=PayoutTxStatus.choices, default=PayoutTxStatus.SIGNED)
    tx_hash = models.CharField(max_length=128, unique=True)
    raw = models.TextField()
    nonce = models.BigIntegerField(null=True, blank=True)
    # The transaction it replaces (replacement, re-sign) or pays for (CPFP child).
    replaces = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # Fee terms as signed (chains.base.FeeTerms): wei per gas (EVM), sun (TRON), sat/vB and sat (BTC).
    gas_limit = models.BigIntegerField(null=True, blank=True)
    max_fee_per_gas = models.BigIntegerField(null=True, blank=True)
    max_priority_fee_per_gas = models.BigIntegerField(null=True, blank=True)
    gas_price = models.BigIntegerField(null=True, blank=True)
    fee_limit = models.BigIntegerField(null=True, blank=True)
    fee_rate = models.DecimalField(max_digits=20, decimal_places=3, null=True, blank=True)
    vsize = models.IntegerField(null=True, blank=True)
    # The network fee in the chain's own coin: known at signing on BTC, from the receipt once mined.
    fee = models.DecimalField(**AMOUNT, null=True, blank=True)
    block_number = models.BigIntegerField(null=True, blank=True)
    block_hash = models.CharField(max_length=128, null=True, blank=True)
    broadcast_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "payout_tx"
        indexes = [
            models.Index(fields=["payout", "id"], name="idx_payout_tx_payout"),
            models.Index(fields=["status"], name="idx_payout_tx_status"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.tx_hash}"


class PayoutWithdrawal(models.Model):
    """
    Which withdrawals a payout pays: one for EVM and TRON, several for a BTC batch.

    A withdrawal has at most one payout, ever: a stuck or unminable one gets new transactions of the
    same payout, never a second payout.
    """

    payout = models.ForeignKey(Payout, on_delete=models.PROTECT, related_name="links")
    withdraw = models.OneToOneField(WithdrawRecord, on_delete=models.PROTECT, related_name="payout_link")
    output_index = models.IntegerField(null=True, blank=True)  # BTC: the withdrawal's output (vout)
    amount = models.DecimalField(**AMOUNT)  # what the recipient gets (withdrawal.actual_amount)
    fee_share = models.DecimalField(**AMOUNT, null=True, blank=True)  # BTC: its share of the network fee

    class Meta:
        db_table = "payout_withdrawal"
        constraints = [
            models.UniqueConstraint(fields=["payout", "output_index"], name="uk_payout_output"),
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="payout_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.payout_id}:{self.withdraw_id}"


class RiskOutcome(models.TextChoices):
    PASS = "PASS", "pass"
    REVIEW = "REVIEW", "hold for review"
    REFUSE = "REFUSE", "refuse"


class RiskStage(models.TextChoices):
    APPLY = "APPLY", "at apply"
    APPROVE = "APPROVE", "at approval"


class WithdrawRiskVerdict(models.Model):
    """
    What each withdrawal risk rule said about a withdrawal, at apply and at every approval.

    Append-only. A refusal at apply is a 400 and leaves no withdrawal (and so no row); a refusal
    at approval rejects the withdrawal and is recorded here.
    """

    withdraw = models.ForeignKey(WithdrawRecord, on_delete=models.PROTECT, related_name="risk_verdicts")
    stage = models.CharField(max_length=16, choices=RiskStage.choices)
    rule = models.CharField(max_length=32)
    outcome = models.CharField(max_length=8, choices=RiskOutcome.choices)
    detail = models.CharField(max_length=500)
    create_time = models.DateTimeField()

    class Meta:
        db_table = "withdraw_risk_verdict"
        verbose_name = "withdrawal risk verdict"
        verbose_name_plural = "withdrawal risk verdicts"
        indexes = [
            models.Index(fields=["withdraw", "id"], name="idx_risk_verdict_withdraw"),
            models.Index(fields=["rule", "outcome"], name="idx_risk_verdict_rule"),
        ]

    def __str__(self) -> str:
        return f"{self.withdraw_id} {self.rule}: {self.outcome}"
