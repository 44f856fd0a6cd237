"""Sweeps in the back office: read-only jobs and pauses; pause/resume a coin and retry a failed sweep as actions."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from sweeps import services as sweeps_services
from sweeps.models import SweepJob, SweepOpsLog, SweepPause
from wallet_project.admin import ReadOnlyAdmin, RemarkForm, remark_page
from wallet_project.errors import WalletError


def _pause_or_resume(
    model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, *, paused: bool
) -> HttpResponse | None:
    coin_ids = sorted({row.coin_id for row in queryset})
    form = RemarkForm(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        for coin_id in coin_ids:
            sweeps_services.sweeps_pause(
                coin_id=coin_id, paused=paused, user=request.user, remark=form.cleaned_data["remark"]
            )
            model_admin.message_user(
                request, f"{coin_id}: sweeps {'paused' if paused else 'resumed'}", messages.SUCCESS
            )
        return None
    return remark_page(
        model_admin,
        request,
        action="pause_coins" if paused else "resume_coins",
        title=f"{'Pause' if paused else 'Resume'} the sweeps of {', '.join(coin_ids)}",
        explanation=(
            "Paused: no sweep of these coins is planned or signed; those already sent are followed to the end."
            if paused
            else "The next run plans and signs the sweeps of these coins again."
        ),
        rows=list(queryset),
        form=form,
    )


@admin.register(SweepJob)
class SweepJobAdmin(ReadOnlyAdmin):
    list_display = (
        "job_no",
        "coin",
        "status",
        "from_address",
        "to_address",
        "amount",
        "topup_amount",
        "fee",
        "topup_fee",
        "inputs",
        "attempts",
        "create_time",
    )
    list_filter = ("chain_id", "coin", "status")
    search_fields = ("job_no", "from_address", "tx_hash", "topup_tx_hash")
    # The signed transactions are public once broadcast, but long: left off the list, shown on the page.
    exclude = ("raw", "topup_raw")
    actions = ("retry", "pause_coins", "resume_coins")

    @admin.action(description="Retry the selected failed sweeps now", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[SweepJob]) -> HttpResponse | None:
        form = RemarkForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            for job in queryset.order_by("id"):
                try:
                    again = sweeps_services.sweep_retry(
                        job_id=job.id, user=request.user, remark=form.cleaned_data["remark"]
                    )
                except WalletError as error:
                    self.message_user(request, f"{job.job_no}: {error.message}", messages.WARNING)
                    continue
                self.message_user(request, f"{job.job_no}: planned again as {again.job_no}", messages.SUCCESS)
            return None
        return remark_page(
            self,
            request,
            action="retry",
            title="Retry the selected failed sweeps",
            explanation="A new sweep of each address is planned now; the failed one stays as it is.",
            rows=list(queryset),
            form=form,
        )

    @admin.action(description="Pause the sweeps of the selected sweeps' coins", permissions=["pause"])
    def pause_coins(self, request: HttpRequest, queryset: QuerySet[SweepJob]) -> HttpResponse | None:
        return _pause_or_resume(self, request, queryset, paused=True)

    @admin.action(description="Resume the sweeps of the selected sweeps' coins", permissions=["pause"])
    def resume_coins(self, request: HttpRequest, queryset: QuerySet[SweepJob]) -> HttpResponse | None:
        return _pause_or_resume(self, request, queryset, paused=False)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("sweeps.retry_sweepjob")

    def has_pause_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("sweeps.pause_sweeps")


@admin.register(SweepPause)
class SweepPauseAdmin(ReadOnlyAdmin):
    list_display = ("coin", "paused", "remark", "changed_by", "update_time")
    actions = ("pause_coins", "resume_coins")

    @admin.action(description="Pause the sweeps of the selected coins", permissions=["pause"])
    def pause_coins(self, request: HttpRequest, queryset: QuerySet[SweepPause]) -> HttpResponse | None:
        return _pause_or_resume(self, request, queryset, paused=True)

    @admin.action(description="Resume the sweeps of the selected coins", permissions=["pause"])
    def resume_coins(self, request: HttpRequest, queryset: QuerySet[SweepPause]) -> HttpResponse | None:
        return _pause_or_resume(self, request, queryset, paused=False)

    def has_pause_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("sweeps.pause_sweeps")


@admin.register(SweepOpsLog)
class SweepOpsLogAdmin(ReadOnlyAdmin):
    list_display = ("create_time", "action", "coin", "job", "user", "remark")
    list_filter = ("action", "coin")
