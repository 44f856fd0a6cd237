"""Admin building blocks shared by the apps, and the rules applied to third-party admins."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from django import forms
from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db.models import Model
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import PeriodicTask

from wallet_project.display import amount_display

# What the back office says it is, on every page. "View site" is gone: this service has no public
# site; the header links to the API documentation instead (templates/admin/base_site.html).
admin.site.site_header = "Exchange wallet — back office"
admin.site.site_title = "Wallet back office"
admin.site.index_title = "Withdrawals, deposits, balances and alerts"
admin.site.site_url = None
# The left navigation takes 300 px of a 1400 px screen, and the money tables (withdrawals, deposits,
# flows) need that width to show every amount on one line without a sideways scrollbar. The index
# and the breadcrumbs lead everywhere it did.
admin.site.enable_nav_sidebar = False


class ReadOnlyAdmin(admin.ModelAdmin):
    """
    Shown, never edited: money, addresses, keys, chain state and audit rows change only through
    services (admin actions call them). Not even a Save of unchanged fields: Django's change form
    writes back every column it read, unlocked, over whatever a service committed meanwhile.
    """

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    """Rows shown under their parent's page, never added, edited or deleted there."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def amount_column(field: str, description: str) -> Callable[[admin.ModelAdmin, Model], SafeString]:
    """
    Return a list column showing a DECIMAL(38,18) field at its coin's precision ("1.5", not
    "1.500000000000000000"), right-aligned and never wrapped (backoffice.css: span.amount).
    """

    @admin.display(description=description, ordering=field)
    def column(model_admin: admin.ModelAdmin, obj: Model) -> SafeString:
        return format_html('<span class="amount">{}</span>', amount_display(getattr(obj, field)))

    return column


def hash_column(field: str, description: str) -> Callable[[admin.ModelAdmin, Model], SafeString]:
    """
    Return a list column showing a transaction hash shortened ("0x3f9a1c…8d21"), the whole hash in
    its tooltip and on the row's own page: a 66-character hash would take a third of the table.
    """

    @admin.display(description=description, ordering=field)
    def column(model_admin: admin.ModelAdmin, obj: Model) -> SafeString | str:
        value = getattr(obj, field) or ""
        if len(value) <= 16:
            return value or "—"
        return format_html('<span class="hash" title="{}">{}…{}</span>', value, value[:10], value[-6:])

    return column


class RemarkForm(forms.Form):
    remark = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why: kept with your name and the time.",
    )


def remark_page(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    *,
    action: str,
    title: str,
    explanation: str,
    rows: Sequence[Model],
    form: RemarkForm,
) -> TemplateResponse:
    """The confirmation page of an action that needs a remark: what it does, to which rows, and why."""
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "explanation": explanation,
        "action": action,
        "rows": rows,
        "form": form,
        "opts": model_admin.model._meta,
        "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/wallet/remark_action.html", context)


# --- django-celery-beat -----------------------------------------------------------------------------
# Its schedules are configuration and stay editable, but its actions (enable, disable, toggle, run
# now) declare no permission: anyone allowed to view the list could stop the deposit scanner or
# start a payout run. Each needs the change permission of periodic tasks here.


def _needs(permission: str, action: Callable) -> Callable:
    @functools.wraps(action)
    def guarded(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: object) -> object:
        return action(model_admin, request, queryset)

    guarded.allowed_permissions = (permission,)
    return guarded


class PeriodicTaskAdmin(beat_admin.PeriodicTaskAdmin):
    enable_tasks = _needs("change", beat_admin.PeriodicTaskAdmin.enable_tasks)
    disable_tasks = _needs("change", beat_admin.PeriodicTaskAdmin.disable_tasks)
    toggle_tasks = _needs("change", beat_admin.PeriodicTaskAdmin.toggle_tasks)
    run_tasks = _needs("change", beat_admin.PeriodicTaskAdmin.run_tasks)


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PeriodicTaskAdmin)


# --- back-office accounts -----------------------------------------------------------------------
# Django's stock admins let whoever may change users or groups edit every field of every account,
# their own included: make themselves superuser, give their group the audit permission, or set an
# auditor's password and approve as a second auditor. Here only a superuser grants privileges or
# changes a staff account (its password included); others with the permission manage customers.


def _privileged(user: AbstractBaseUser) -> bool:
    return bool(user.is_staff or user.is_superuser)


class UserAdmin(auth_admin.UserAdmin):
    privilege_fields = ("is_staff", "is_superuser", "groups", "user_permissions")

    def get_readonly_fields(self, request: HttpRequest, obj: AbstractBaseUser | None = None) -> tuple[str, ...]:
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields if request.user.is_superuser else (*fields, *self.privilege_fields)

    def has_change_permission(self, request: HttpRequest, obj: AbstractBaseUser | None = None) -> bool:
        # Also guards the password form (user_change_password asks this for the account).
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or request.user.is_superuser or not _privileged(obj))

    def has_delete_permission(self, request: HttpRequest, obj: AbstractBaseUser | None = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or request.user.is_superuser or not _privileged(obj))


class GroupAdmin(auth_admin.GroupAdmin):
    """Groups are roles: a bundle of permissions that only a superuser may change."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Group | None = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Group | None = None) -> bool:
        return request.user.is_superuser


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), UserAdmin)
admin.site.unregister(Group)
admin.site.register(Group, GroupAdmin)
