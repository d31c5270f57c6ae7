"""Everything that speaks SMTP: the transport, deadlines, Gmail's replies, envelopes."""
