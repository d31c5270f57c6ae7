"""``send(template=..., context=...)``: Flask's own templates, autoescaped in the HTML part."""

from __future__ import annotations

import jinja2
import pytest
from flask import Flask

import postbud
from flask_postbud import Postbud
from postbud.testing import FakeGmail

SCRIPT = "<script>alert('x')</script>"


def test_a_script_in_the_context_arrives_escaped_in_the_html_part(
    gmail_app: Flask, ext: Postbud, fake_gmail: FakeGmail
) -> None:
    with gmail_app.app_context():
        ext.send(
            "you@example.com", "Hi", template="mail/welcome", context={"name": SCRIPT, "site": "S"}
        )
    [received] = fake_gmail.messages
    assert received.html is not None and received.text is not None
    assert "<script>" not in received.html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in received.html
    # The .txt template is not HTML: no escaping there (a text part shows no markup).
    assert f"Hello {SCRIPT}," in received.text


def test_an_html_only_template_gets_postbuds_text_part(
    gmail_app: Flask, ext: Postbud, fake_gmail: FakeGmail
) -> None:
    with gmail_app.app_context():
        ext.send("you@example.com", "Receipt", template="mail/receipt", context={"name": "Ann"})
    [received] = fake_gmail.messages
    assert received.html is not None and "<b></b>" in received.html  # total missing: empty
    assert received.text is not None and "Your receipt, Ann" in received.text


def test_neither_template_file_names_both_paths(
    gmail_app: Flask, ext: Postbud, fake_gmail: FakeGmail
) -> None:
    with gmail_app.app_context(), pytest.raises(jinja2.TemplatesNotFound) as caught:
        ext.send("you@example.com", "Hi", template="mail/nothing")
    assert "mail/nothing.txt" in str(caught.value)
    assert "mail/nothing.html" in str(caught.value)
    assert fake_gmail.messages == []


def test_a_missing_include_is_not_taken_for_a_missing_template(
    gmail_app: Flask, ext: Postbud
) -> None:
    with gmail_app.app_context(), pytest.raises(jinja2.TemplateNotFound) as caught:
        ext.send("you@example.com", "Hi", template="mail/broken")
    assert caught.value.name == "mail/missing_part.html"


def test_template_with_bodies_or_context_alone_is_refused(gmail_app: Flask, ext: Postbud) -> None:
    with gmail_app.app_context():
        with pytest.raises(postbud.InvalidMessageError, match="not both"):
            ext.send("you@example.com", "Hi", "text", template="mail/welcome")
        with pytest.raises(postbud.InvalidMessageError, match="context= is for template="):
            ext.send("you@example.com", "Hi", "text", context={"a": 1})


def test_context_processors_apply(gmail_app: Flask, ext: Postbud, fake_gmail: FakeGmail) -> None:
    @gmail_app.context_processor
    def site() -> dict[str, str]:
        return {"site": "From a context processor"}

    with gmail_app.app_context():
        ext.send("you@example.com", "Hi", template="mail/welcome", context={"name": "Ann"})
    [received] = fake_gmail.messages
    assert received.text is not None and "welcome to From a context processor." in received.text
