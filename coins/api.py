from django.core.cache import cache
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from coins import selectors as coins_selectors
from coins.services import COIN_LIST_CACHE_KEY

COIN_LIST_CACHE_SECONDS = 10


class CoinListApi(APIView):
    """The enabled coins with their limits and fees: public, the same for every user."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    class OutputSerializer(serializers.Serializer):
        coin_id = serializers.CharField()
        coin_name = serializers.CharField()
        coin_symbol = serializers.CharField()
        chain_id = serializers.CharField()
        chain_name = serializers.CharField()
        contract_address = serializers.CharField(allow_null=True)
        decimals = serializers.IntegerField()
        min_recharge_amount = serializers.DecimalField(max_digits=38, decimal_places=18, normalize_output=True)
        min_withdraw_amount = serializers.DecimalField(max_digits=38, decimal_places=18, normalize_output=True)
        max_withdraw_amount = serializers.DecimalField(max_digits=38, decimal_places=18, normalize_output=True)
        withdraw_fee = serializers.DecimalField(max_digits=38, decimal_places=18, normalize_output=True)
        withdraw_fee_type = serializers.IntegerField()
        withdraw_fee_rate = serializers.DecimalField(max_digits=10, decimal_places=6, normalize_output=True)
        required_confirmations = serializers.IntegerField()
        recharge_enabled = serializers.SerializerMethodField()
        withdraw_enabled = serializers.SerializerMethodField()

        def get_recharge_enabled(self, coin) -> bool:
            return coin.recharge_enabled == 1

        def get_withdraw_enabled(self, coin) -> bool:
            return coin.withdraw_enabled == 1

    def get(self, request: Request) -> Response:
        # The list changes only when ops edit a coin; a short cache spares the database the
        # same query from every client. Edits through the admin drop it at once.
        data = cache.get_or_set(
            COIN_LIST_CACHE_KEY,
            lambda: self.OutputSerializer(coins_selectors.coin_list(), many=True).data,
            COIN_LIST_CACHE_SECONDS,
        )
        return Response({"results": data})
