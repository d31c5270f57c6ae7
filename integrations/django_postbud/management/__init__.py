"""django_postbud's management commands (``postbud_check``, ``postbud_outbox``): Django
finds them only when ``"django_postbud"`` is in ``INSTALLED_APPS``."""
