"""Everything that speaks SMTP: the transport, deadlines, Gmail's replies, envelopes.

Private: the rest of postbud imports only the names below, never a module inside.
"""

from __future__ import annotations

from .deliver import SendResult, deliver
from .errors import translate
from .replies import Stage, classify, enhanced_code, refusals_retryable, summary, temporary
from .route import Route, current_route, redirected
from .transport import Probe, Refused, SMTPTransport, Transport

__all__ = [
    "Probe",
    "Refused",
    "Route",
    "SMTPTransport",
    "SendResult",
    "Stage",
    "Transport",
    "classify",
    "current_route",
    "deliver",
    "enhanced_code",
    "redirected",
    "refusals_retryable",
    "summary",
    "temporary",
    "translate",
]
