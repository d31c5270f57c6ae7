"""The shop's views that send mail: one waits for Gmail, one hands the mail to the outbox,
one starts a thread that sends on its own."""

from __future__ import annotations

from flask import Blueprint, request

from . import jobs, postbud

bp = Blueprint("shop", __name__)


@bp.post("/signup")
def signup() -> str:
    # Blocking: returns once Gmail accepted the mail, or raises a postbud.DeliveryError.
    postbud.send(
        to=request.form["email"],
        subject="Welcome to My Shop",
        template="mail/welcome",  # mail/welcome.txt and mail/welcome.html
        context={"name": request.form["name"]},
    )
    return "Welcome! Check your inbox."


@bp.post("/orders/<int:number>/receipt")
def receipt(number: int) -> str:
    # Non-blocking: the mail is stored in the outbox and sent by its worker thread.
    csv = f"order,total\n{number},12.50 EUR\n".encode()
    return postbud.submit(
        to=request.form["email"],
        subject=f"Your receipt for order {number}",
        template="mail/receipt",  # only mail/receipt.html: postbud writes the text part
        context={"number": number, "total": "12.50 EUR"},
        attachments=[(f"receipt-{number}.csv", csv, "text/csv")],
    )


@bp.post("/reports")
def report() -> tuple[str, int]:
    jobs.start_report(request.form["email"])
    return "The report is on its way.", 202
