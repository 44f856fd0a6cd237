from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from withdrawals import risk_rules as withdrawals_risk
from withdrawals import selectors as withdrawals_selectors
from withdrawals import services as withdrawals_services
from withdrawals.models import WithdrawRecord, WithdrawStatus

MONEY = {"max_digits": 38, "decimal_places": 18, "normalize_output": True}


@extend_schema_field(OpenApiTypes.STR)
class AmountField(serializers.Field):
    """
    The amount exactly as the client sent it, for the coin rules to parse (coins_selectors.amount_parse).

    Not a CharField, which would strip spaces and turn a JSON number into a string: both are
    refused by the parser, in the same error as every other malformed amount.
    """

    def to_internal_value(self, data: object) -> object:
        return data

    def to_representation(self, value: object) -> str:
        return str(value)


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
    waiting_reason = serializers.SerializerMethodField()

    def get_internal(self, record: WithdrawRecord) -> bool:
        return record.to_user_id is not None

    def get_status_name(self, record: WithdrawRecord) -> str:
        return WithdrawStatus(record.status).name

    @extend_schema_field(OpenApiTypes.STR)
    def get_waiting_reason(self, record: WithdrawRecord) -> str | None:
        """Why the withdrawal is not moving on, when the user should know (review, payouts paused); else null."""
        return self.context.get("waiting", {}).get(record.id)


def _output(records: list[WithdrawRecord], *, many: bool) -> object:
    """The withdrawals as the API shows them, with their waiting reasons read in one go."""
    waiting = withdrawals_risk.waiting_reasons(records=records)
    serializer = WithdrawalOutputSerializer(records if many else records[0], many=many, context={"waiting": waiting})
    return serializer.data


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
        amount = AmountField()
        idempotency_key = serializers.CharField(max_length=64)

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
        return paginator.get_paginated_response(_output(list(page), many=True))

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
        return Response(_output([record], many=False), status=status.HTTP_201_CREATED)


class WithdrawalGetApi(APIView):
    """One of the caller's withdrawals."""

    permission_classes = [IsAuthenticated]

    def get(self, request: Request, withdraw_no: str) -> Response:
        record = withdrawals_selectors.withdrawal_get(user_id=request.user.id, withdraw_no=withdraw_no)
        return Response(_output([record], many=False))


class WithdrawalCancelApi(APIView):
    """Cancel one of the caller's withdrawals while it waits for review; the amount is unfrozen."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={200: WithdrawalOutputSerializer},
        description=(
            "Allowed while the withdrawal is pending review and no auditor has acted on it (409 "
            "withdrawal_not_cancellable otherwise). Cancelling a cancelled withdrawal answers the same again."
        ),
    )
    def post(self, request: Request, withdraw_no: str) -> Response:
        record = withdrawals_services.withdrawal_cancel(user_id=request.user.id, withdraw_no=withdraw_no)
        return Response(_output([record], many=False))
