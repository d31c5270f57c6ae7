"""A sign-up that mails a welcome once the new user is saved.

With BACKGROUND, send_mail() only puts the message in postbud's spool, a file apart from
the database: queued inside transaction.atomic(), the welcome would go out even if the
transaction rolled back. transaction.on_commit() queues it after the commit, or never.
"""

from __future__ import annotations

from functools import partial

from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.db import transaction


def sign_up(email: str) -> User:
    with transaction.atomic():
        user = User.objects.create_user(username=email, email=email)
        welcome = partial(send_mail, "Welcome!", "Your account is ready.", None, [email])
        transaction.on_commit(welcome)
    return user
