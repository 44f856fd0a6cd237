from rest_framework import serializers
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from recharges import selectors as recharges_selectors
from recharges.models import RechargeRecord, RechargeStatus

MONEY = {"max_digits": 38, "decimal_places": 18, "normalize_output": True}


class RechargePagination(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class RechargeListApi(APIView):
    """The caller's deposits, newest first, with their status and confirmations (cursor pagination)."""

    class FilterSerializer(serializers.Serializer):
        coin = serializers.CharField(max_length=32, required=False)
        status = serializers.ChoiceField(choices=RechargeStatus.choices, required=False)

    class OutputSerializer(serializers.Serializer):
        recharge_no = serializers.CharField()
        coin_id = serializers.CharField()
        amount = serializers.DecimalField(**MONEY)
        tx_hash = serializers.CharField()
        log_index = serializers.IntegerField()
        from_address = serializers.CharField()
        to_address = serializers.CharField()
        status = serializers.IntegerField()
        status_name = serializers.SerializerMethodField()
        confirmations = serializers.SerializerMethodField()
        required_confirmations = serializers.IntegerField()
        block_number = serializers.IntegerField(allow_null=True)
        create_time = serializers.DateTimeField()
        confirm_time = serializers.DateTimeField(allow_null=True)

        def get_status_name(self, record: RechargeRecord) -> str:
            return RechargeStatus(record.status).name

        def get_confirmations(self, record: RechargeRecord) -> int:
            return recharges_selectors.recharge_confirmations(record=record, tips=self.context["tips"])

    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        records = recharges_selectors.recharge_list(
            user_id=request.user.id, coin_id=data.get("coin"), status=data.get("status")
        )
        paginator = RechargePagination()
        page = paginator.paginate_queryset(records, request, view=self)
        context = {"tips": recharges_selectors.chain_tips()}
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True, context=context).data)
