from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework_simplejwt.views import TokenRefreshView

from addresses.api import DepositAddressGetApi
from assets.api import BalanceListApi, FlowListApi
from coins.api import CoinListApi
from controls.api import (
    AddressBookEntryApi,
    AddressBookListApi,
    AddressBookSwitchApi,
    BreakerListApi,
    BreakerTripApi,
)
from monitoring import views as monitoring_views
from recharges.api import RechargeListApi
from reserves.api import ReservesProofApi
from wallet_project.health import HealthApi
from wallet_project.login import ThrottledAdminLoginForm, TokenObtainApi
from withdrawals.api import WithdrawalCancelApi, WithdrawalGetApi, WithdrawalListApi

api_v1 = [
    path("auth/token", TokenObtainApi.as_view(), name="token-obtain"),
    path("auth/token/refresh", TokenRefreshView.as_view(), name="token-refresh"),
    path("wallet/health", HealthApi.as_view(), name="health"),
    path("coins", CoinListApi.as_view(), name="coin-list"),
    path("balances", BalanceListApi.as_view(), name="balance-list"),
    path("flows", FlowListApi.as_view(), name="flow-list"),
    path("wallet/deposit-address", DepositAddressGetApi.as_view(), name="deposit-address"),
    path("wallet/recharges", RechargeListApi.as_view(), name="recharge-list"),
    path("wallet/withdrawals", WithdrawalListApi.as_view(), name="withdrawal-list"),
    path("wallet/withdrawals/<str:withdraw_no>", WithdrawalGetApi.as_view(), name="withdrawal-get"),
    path("wallet/withdrawals/<str:withdraw_no>/cancel", WithdrawalCancelApi.as_view(), name="withdrawal-cancel"),
    path("wallet/reserves/proof", ReservesProofApi.as_view(), name="reserves-proof"),
    path("wallet/address-book", AddressBookListApi.as_view(), name="address-book"),
    path("wallet/address-book/settings", AddressBookSwitchApi.as_view(), name="address-book-settings"),
    path("wallet/address-book/<int:entry_id>", AddressBookEntryApi.as_view(), name="address-book-entry"),
    path("ops/breakers", BreakerListApi.as_view(), name="ops-breakers"),
    path("ops/breakers/<str:coin_id>/trip", BreakerTripApi.as_view(), name="ops-breaker-trip"),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("admin/", admin.site.urls),
    path("metrics", monitoring_views.metrics, name="prometheus-django-metrics"),
]

admin.site.login_form = ThrottledAdminLoginForm
