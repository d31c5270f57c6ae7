"""``postbud send``: one message now, its body from stdin; kept in the spool if Gmail
cannot take it now (exit 75), so the next postbud command delivers it."""

from __future__ import annotations

import argparse
import sys

from postbud._smtp import summary, temporary

from ._common import EXIT_DELIVERY, EXIT_OK, EXIT_TEMPFAIL, Usage, mailer_from, say

__all__ = ["send_command"]


def send_command(args: argparse.Namespace) -> int:
    """Run ``postbud send``; returns the exit status."""
    if sys.stdin is None or sys.stdin.isatty():
        raise Usage(
            "the message body comes from stdin: "
            "echo 'Backup done' | postbud send --to you@example.com --subject Backup"
        )
    text = sys.stdin.buffer.read().decode("utf-8", "replace")
    html = None
    if args.html:
        try:
            with open(args.html, encoding="utf-8") as fh:
                html = fh.read()
        except OSError as exc:
            raise Usage(f"--html: cannot read {args.html}: {exc.strerror}") from None
    mailer = mailer_from(args)
    try:
        envelope = mailer.build(
            args.to,
            args.subject,
            text,
            html,
            cc=args.cc,
            bcc=args.bcc,
            reply_to=args.reply_to,
            attachments=args.attach,
        )
        result, kept = mailer.outbox.send_or_keep(envelope, args.priority)
        if result is not None:
            print(result.message_id)
        refused_for_good = False
        for address, (code, reply) in result.refused.items() if result else ():
            if not temporary(code, reply):
                refused_for_good = True
                say(f"{address} was refused: {code} {summary(reply)}")
        if kept is not None:
            say(mailer.outbox.kept_line("the message" if result is None else "a copy", kept))
        waits = mailer.outbox.waits() if kept is not None else None
        if refused_for_good or (waits is not None and waits[1].needs_user):
            return EXIT_DELIVERY  # kept, but only the user can make it go
        return EXIT_TEMPFAIL if kept is not None else EXIT_OK
    finally:
        mailer.close(timeout=0)
