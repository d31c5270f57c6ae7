"""Views the tests call through Django's test client."""

from __future__ import annotations

from django.core.mail import send_mail
from django.http import HttpRequest, HttpResponse
from django.views.decorators.debug import sensitive_post_parameters


def send_one(request: HttpRequest) -> HttpResponse:
    """Sends one mail in the request, as a sign-up confirmation would."""
    count = send_mail("Welcome", "Thanks for signing up.", None, ["new@example.com"])
    return HttpResponse(f"sent {count}")


def boom(request: HttpRequest) -> HttpResponse:
    """Fails: a 500 that Django logs on django.request (the admin alert's source)."""
    raise RuntimeError("the checkout is broken")


@sensitive_post_parameters("password")
def boom_login(request: HttpRequest) -> HttpResponse:
    """Fails on a POST whose password field Django's report must hide (admin alerts)."""
    raise RuntimeError("the login is broken")
