from rest_framework import serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from withdrawals import selectors as withdrawals_selectors
from withdrawals import services as withdrawals_services
from withdrawals.models import WithdrawRecord, WithdrawStatus

MONEY = {"max_digits": 38, "decimal_places": 18, "normalize_output": True}


class WithdrawalOutputSerializer(serializers.Serializer):
    withdraw_no = serializers.CharField()
    coin_id = serializers.CharField()
    to_address = serializers.CharField()
    amount = serializers.DecimalField(**MONEY)
    fee = serializers.DecimalField(**MONEY)
    actual_amount = serializers.DecimalField(**MONEY)
    internal = serializers.SerializerMethodField()
    status = serializers.IntegerField()
    status_name = serializers.SerializerMethodField()
    tx_hash = serializers.CharField(allow_null=True)
    audit_remark = serializers.CharField(allow_null=True)
    create_time = serializers.DateTimeField()
    complete_time = serializers.DateTimeField(allow_null=True)

    def get_internal(self, record: WithdrawRecord) -> bool:
        return record.to_user_id is not None

    def get_status_name(self, record: WithdrawRecord) -> str:
        return WithdrawStatus(record.status).name


class WithdrawalPagination(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class WithdrawalListApi(APIView):
    """The caller's withdrawals (GET, newest first) and a new withdrawal (POST)."""

    permission_classes = [IsAuthenticated]

    class FilterSerializer(serializers.Serializer):
        coin = serializers.CharField(max_length=32, required=False)
        status = serializers.ChoiceField(choices=WithdrawStatus.choices, required=False)

    class InputSerializer(serializers.Serializer):
        coin = serializers.CharField(max_length=32)
        to_address = serializers.CharField(max_length=255)
        # A string, parsed by the coin rules: a JSON number is read as a float, which may not be
        # the amount the user typed (1.2345678901234567e16), so it is refused rather than guessed.
        amount = serializers.CharField(max_length=64)
        idempotency_key = serializers.CharField(max_length=64)

        def validate_amount(self, value: str) -> str:
            if not isinstance(self.initial_data.get("amount"), str):
                raise serializers.ValidationError('Send the amount as a decimal string, such as "0.5".')
            return value

    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        records = withdrawals_selectors.withdrawal_list(
            user_id=request.user.id,
            coin_id=filters.validated_data.get("coin"),
            status=filters.validated_data.get("status"),
        )
        paginator = WithdrawalPagination()
        page = paginator.paginate_queryset(records, request, view=self)
        return paginator.get_paginated_response(WithdrawalOutputSerializer(page, many=True).data)

    def post(self, request: Request) -> Response:
        incoming = self.InputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        record = withdrawals_services.withdrawal_apply(
            user_id=request.user.id,
            coin_id=data["coin"],
            to_address=data["to_address"],
            amount=data["amount"],
            idempotency_key=data["idempotency_key"],
        )
        return Response(WithdrawalOutputSerializer(record).data, status=status.HTTP_201_CREATED)


class WithdrawalGetApi(APIView):
    """One of the caller's withdrawals."""

    permission_classes = [IsAuthenticated]

    def get(self, request: Request, withdraw_no: str) -> Response:
        record = withdrawals_selectors.withdrawal_get(user_id=request.user.id, withdraw_no=withdraw_no)
        return Response(WithdrawalOutputSerializer(record).data)
