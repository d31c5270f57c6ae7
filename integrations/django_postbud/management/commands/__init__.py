"""``manage.py postbud_check`` and ``manage.py postbud_outbox``."""
