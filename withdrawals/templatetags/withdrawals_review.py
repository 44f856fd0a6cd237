"""The review queue's panel at the top of the admin index: how many withdrawals wait, since when."""

from __future__ import annotations

from django import template

from withdrawals import review

register = template.Library()


@register.inclusion_tag("admin/withdrawals/review_queue_panel.html", takes_context=True)
def review_queue_panel(context: template.Context) -> dict[str, object]:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.has_perm("withdrawals.view_withdrawrecord"):
        return {"shown": False}
    return {
        "shown": True,
        "summary": review.review_queue_summary(),
        "may_audit": user.has_perm("withdrawals.audit_withdrawrecord"),
    }
