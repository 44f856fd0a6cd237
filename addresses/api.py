from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from addresses import services as addresses_services


class DepositAddressGetApi(APIView):
    """The user's deposit address for a coin's chain; the first request assigns one."""

    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        coin = serializers.CharField(max_length=32)

    class OutputSerializer(serializers.Serializer):
        coin = serializers.CharField()
        chain_id = serializers.CharField()
        address = serializers.CharField()

    def get(self, request: Request) -> Response:
        incoming = self.InputSerializer(data=request.query_params)
        incoming.is_valid(raise_exception=True)
        coin_id = incoming.validated_data["coin"]
        row = addresses_services.deposit_address_assign(user=request.user, coin_id=coin_id)
        return Response(self.OutputSerializer({"coin": coin_id, "chain_id": row.chain_id, "address": row.address}).data)
