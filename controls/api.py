"""
The risk controls' API: a user's withdrawal address book and "address book only" switch, and the
ops endpoints for circuit breakers (a staff token holding the endpoint's own permission).
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from coins import selectors as coins_selectors
from controls import breakers, services
from controls import selectors as controls_selectors
from controls.models import BreakerSource, CoinBreaker


class AddressBookEntryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    chain_id = serializers.CharField()
    address = serializers.CharField()
    label = serializers.CharField()
    create_time = serializers.DateTimeField()
    usable_at = serializers.DateTimeField()


class AddressBookListApi(APIView):
    """The caller's withdrawal address book (GET, newest first) and a new entry (POST)."""

    permission_classes = [IsAuthenticated]

    class FilterSerializer(serializers.Serializer):
        coin = serializers.CharField(max_length=32, required=False)

    class InputSerializer(serializers.Serializer):
        coin = serializers.CharField(max_length=32, help_text="Any coin of the address's chain: one entry serves all.")
        address = serializers.CharField(max_length=255)
        label = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")

    @extend_schema(responses={200: AddressBookEntryOutput(many=True)})
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        coin_id = filters.validated_data.get("coin")
        chain_id = coins_selectors.coin_get(coin_id=coin_id).chain_id if coin_id else None
        rows = controls_selectors.book_list(user_id=request.user.id, chain_id=chain_id)[:500]
        return Response(AddressBookEntryOutput(rows, many=True).data)

    @extend_schema(
        request=InputSerializer,
        responses={201: AddressBookEntryOutput},
        description="The entry can be withdrawn to from usable_at (RISK_ADDRESS_BOOK_COOLING_SECONDS later).",
    )
    def post(self, request: Request) -> Response:
        incoming = self.InputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        entry = services.book_entry_add(
            user_id=request.user.id, coin_id=data["coin"], address=data["address"], label=data["label"]
        )
        return Response(AddressBookEntryOutput(entry).data, status=status.HTTP_201_CREATED)


class AddressBookEntryApi(APIView):
    """Remove one entry of the caller's address book."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, entry_id: int) -> Response:
        services.book_entry_remove(user_id=request.user.id, entry_id=entry_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class BookSwitchOutput(serializers.Serializer):
    book_only = serializers.BooleanField(help_text="Withdrawals go only to usable address book entries now.")
    release_at = serializers.DateTimeField(
        allow_null=True, help_text="When a requested switch-off takes effect (it stays on until then)."
    )


class AddressBookSwitchApi(APIView):
    """The caller's "address book only" switch: on at once, off after the cooling period."""

    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        book_only = serializers.BooleanField()

    @extend_schema(responses={200: BookSwitchOutput})
    def get(self, request: Request) -> Response:
        switch = controls_selectors.book_switch(user_id=request.user.id, now=timezone.now())
        return Response(BookSwitchOutput(switch).data)

    @extend_schema(request=InputSerializer, responses={200: BookSwitchOutput})
    def put(self, request: Request) -> Response:
        incoming = self.InputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        switch = services.book_switch_set(user_id=request.user.id, book_only=incoming.validated_data["book_only"])
        return Response(BookSwitchOutput(switch).data)


# --- ops ----------------------------------------------------------------------------------------------


class StaffWith(BasePermission):
    """A staff member's token whose user holds the view's `required_permission`."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return bool(
            user and user.is_authenticated and user.is_staff and user.has_perm(view.required_permission)  # type: ignore[attr-defined]
        )


class BreakerOutput(serializers.Serializer):
    coin_id = serializers.CharField()
    tripped = serializers.BooleanField()
    trip_count = serializers.IntegerField()
    source = serializers.CharField()
    reason = serializers.CharField()
    tripped_at = serializers.DateTimeField(allow_null=True)
    last_tripped_at = serializers.DateTimeField(allow_null=True)
    cleared_at = serializers.DateTimeField(allow_null=True)


class BreakerListApi(APIView):
    """Every coin's circuit breaker (coins never tripped show as not tripped)."""

    permission_classes = [StaffWith]
    required_permission = "controls.view_coinbreaker"

    @extend_schema(responses={200: BreakerOutput(many=True)})
    def get(self, request: Request) -> Response:
        known = {b.coin_id: b for b in controls_selectors.breaker_list()}
        rows = [
            known.get(coin.coin_id) or CoinBreaker(coin_id=coin.coin_id)
            for coin in coins_selectors.coin_list(enabled_only=False)
        ]
        return Response(BreakerOutput(rows, many=True).data)


class BreakerTripApi(APIView):
    """Trip a coin's circuit breaker: its withdrawals stop being signed until two people clear it."""

    permission_classes = [StaffWith]
    required_permission = breakers.TRIP_PERMISSION

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=500)

    @extend_schema(request=InputSerializer, responses={200: BreakerOutput})
    def post(self, request: Request, coin_id: str) -> Response:
        incoming = self.InputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        breaker = breakers.breaker_trip(
            coin_id=coin_id, reason=incoming.validated_data["reason"], source=BreakerSource.OPS, user=request.user
        )
        return Response(BreakerOutput(breaker).data)
