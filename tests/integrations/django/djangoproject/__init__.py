"""A small Django site for django_postbud's tests (one settings module per way of
configuring mail: the legacy EMAIL_* settings, and Django 6.1's MAILERS)."""
