"""The test site's URLs (views.py)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from djangoproject import views

urlpatterns = [
    path("send/", views.send_one, name="send"),
    # django.contrib.auth's password-reset flow (the mail it sends goes through the backend)
    path(
        "password-reset/",
        auth_views.PasswordResetView.as_view(success_url="/password-reset/done/"),
        name="password_reset",
    ),
    path(
        "reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("boom/", views.boom, name="boom"),
    path("boom/login/", views.boom_login, name="boom-login"),
]
