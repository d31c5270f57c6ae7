"""Error mail to ADMINS through postbud's AdminAlertHandler: Django's own default logging
with one class changed, so Django's AdminEmailHandler is replaced, not joined."""

import copy

from django.utils.log import DEFAULT_LOGGING

LOGGING = copy.deepcopy(DEFAULT_LOGGING)
LOGGING["handlers"]["mail_admins"].update(
    {
        "class": "django_postbud.AdminAlertHandler",  # was django.utils.log.AdminEmailHandler
        "include_html": True,  # Django's HTML report too (it shows local variables)
        "alert_tag": "prod",  # subjects start with [prod]
    }
)
