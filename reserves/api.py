from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from reserves import selectors as reserves_selectors


class ReservesProofApi(APIView):
    """
    The user's proof of reserves for a coin in the latest published snapshot: their leaf and salt,
    the sibling path, the roots and totals, and the exchange's signed addresses. Verify it offline
    with tools/verify_reserves.py (see the README).
    """

    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        coin = serializers.CharField(max_length=32)

    @extend_schema(parameters=[InputSerializer], responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        incoming = self.InputSerializer(data=request.query_params)
        incoming.is_valid(raise_exception=True)
        proof = reserves_selectors.proof_get(user_id=request.user.id, coin_id=incoming.validated_data["coin"])
        # Plain JSON: base-unit integers are strings already, hashes hex.
        return Response(proof)
