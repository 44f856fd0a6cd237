from rest_framework import serializers
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assets import selectors as assets_selectors
from assets.models import BusinessType

MONEY = {"max_digits": 38, "decimal_places": 18, "normalize_output": True}


class BalanceListApi(APIView):
    """The caller's balances per coin: available, frozen, and debt (owed after a reorg; repaid by the next credits)."""

    class OutputSerializer(serializers.Serializer):
        coin_id = serializers.CharField()
        available = serializers.DecimalField(**MONEY)
        frozen = serializers.DecimalField(**MONEY)
        debt = serializers.DecimalField(**MONEY)

    def get(self, request: Request) -> Response:
        balances = assets_selectors.balance_list(user_id=request.user.id)
        return Response({"results": self.OutputSerializer(balances, many=True).data})


class FlowPagination(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class FlowListApi(APIView):
    """The caller's balance history, newest first, by cursor (stable under concurrent inserts)."""

    class FilterSerializer(serializers.Serializer):
        coin = serializers.CharField(max_length=32, required=False)
        business_type = serializers.ChoiceField(choices=BusinessType.choices, required=False)
        since = serializers.DateTimeField(required=False)
        until = serializers.DateTimeField(required=False)

        def validate(self, attrs: dict) -> dict:
            if "since" in attrs and "until" in attrs and attrs["since"] >= attrs["until"]:
                raise serializers.ValidationError({"until": "until must be later than since."})
            return attrs

    class OutputSerializer(serializers.Serializer):
        flow_no = serializers.CharField()
        coin_id = serializers.CharField()
        business_type = serializers.IntegerField()
        business_type_name = serializers.SerializerMethodField()
        biz_ref = serializers.CharField()
        amount = serializers.DecimalField(**MONEY)
        balance_before = serializers.DecimalField(**MONEY)
        balance_after = serializers.DecimalField(**MONEY)
        frozen_amount = serializers.DecimalField(**MONEY)
        frozen_before = serializers.DecimalField(**MONEY)
        frozen_after = serializers.DecimalField(**MONEY)
        debt_amount = serializers.DecimalField(**MONEY)
        debt_after = serializers.DecimalField(**MONEY)
        ref_tx_hash = serializers.CharField()
        create_time = serializers.DateTimeField()

        def get_business_type_name(self, flow) -> str:
            return BusinessType(flow.business_type).name

    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        flows = assets_selectors.flow_list(
            user_id=request.user.id,
            coin_id=data.get("coin"),
            business_type=data.get("business_type"),
            since=data.get("since"),
            until=data.get("until"),
        )
        paginator = FlowPagination()
        page = paginator.paginate_queryset(flows, request, view=self)
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)
