"""Email delivery of onboarding links, against a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Callable, Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from reconciler import delivery
from reconciler.apply import InvitationRecord
from reconciler.delivery import (
    DEFAULT_TEMPLATE,
    Mailer,
    SmtpSettings,
    load_template,
    send_invitations,
)

PASSWORD = "s3cret-Pa55word"
UI = "http://proxy.test:4000"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Collector:
    """An aiosmtpd handler that keeps every message and refuses the addresses in ``reject``."""

    def __init__(self, reject: tuple[str, ...] = ()):
        self.reject = reject
        self.messages: list[tuple[str, list[str], Message]] = []
        self.logins: list[tuple[str, str]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address in self.reject:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 Message accepted"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=data.password.decode() == PASSWORD, handled=False)


@pytest.fixture
def serve() -> Iterator[Callable[..., SmtpSettings]]:
    """Start real SMTP servers on 127.0.0.1; every one is stopped at the end of the test."""
    controllers: list[Controller] = []

    def start(handler: Collector, **kwargs: Any) -> SmtpSettings:
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        controllers.append(controller)
        return SmtpSettings(host="127.0.0.1", port=port, sender="LLM proxy <llm@company.com>", security="none")

    yield start
    for controller in controllers:
        controller.stop()


def record(email: str, invitation_id: str | None = "inv-1", status: str = "created") -> InvitationRecord:
    return InvitationRecord(
        email=email,
        user_id=f"user-{email}",
        invitation_id=invitation_id,
        expires_at="2030-01-08T10:00:00.000000Z" if invitation_id else None,
        onboarding_link=f"{UI}/ui/onboarding?invitation_id={invitation_id}" if invitation_id else None,
        status=status,
    )


def body(message: Message) -> str:
    return message.get_payload(decode=True).decode()


# --------------------------------------------------------------------------- delivery


def test_each_user_gets_one_message_with_link_and_expiry(serve) -> None:
    handler = Collector()
    settings = serve(handler)
    records = [record("alice@company.com", "inv-a"), record("bob@company.com", "inv-b")]

    send_invitations(records, settings, load_template(None))

    assert [r.status for r in records] == ["sent", "sent"]
    assert [r.error for r in records] == [None, None]
    assert len(handler.messages) == 2
    for (mail_from, rcpt, message), rec in zip(handler.messages, records):
        assert mail_from == "llm@company.com"
        assert rcpt == [rec.email]
        assert message["To"] == rec.email
        assert message["From"] == "LLM proxy <llm@company.com>"
        assert message["Subject"] == f"Your access to the LLM proxy at {UI}"
        assert message["Message-ID"].endswith("@company.com>")
        text = body(message)
        assert rec.onboarding_link in text
        assert "2030-01-08" in text and "T10:00" not in text
        assert rec.email in text


def test_custom_template_file(serve, tmp_path: Path) -> None:
    handler = Collector()
    settings = serve(handler)
    path = tmp_path / "invite.txt"
    path.write_text("Subject: Welcome $email\n\nHi! Go to ${link} before $expires_at. Costs $$0.\n", encoding="utf-8")

    send_invitations([record("alice@company.com")], settings, load_template(str(path)))

    ((_, _, message),) = handler.messages
    assert message["Subject"] == "Welcome alice@company.com"
    assert body(message).strip() == f"Hi! Go to {UI}/ui/onboarding?invitation_id=inv-1 before 2030-01-08. Costs $0."


def test_records_without_link_are_left_alone_and_no_connection_is_made() -> None:
    skipped = record("alice@company.com", invitation_id=None, status="failed")
    calls: list[SmtpSettings] = []

    def factory(settings: SmtpSettings) -> smtplib.SMTP:
        calls.append(settings)
        raise AssertionError("must not connect")

    send_invitations([skipped], SmtpSettings("127.0.0.1", 1, "a@b.co", "none"), DEFAULT_TEMPLATE, factory)

    assert (skipped.status, skipped.error, calls) == ("failed", None, [])


def test_one_refused_recipient_fails_alone_and_keeps_its_link(serve) -> None:
    handler = Collector(reject=("bob@company.com",))
    settings = serve(handler)
    records = [
        record("alice@company.com", "inv-a"),
        record("bob@company.com", "inv-b"),
        record("carol@company.com", "inv-c"),
    ]

    send_invitations(records, settings, DEFAULT_TEMPLATE)

    assert [r.status for r in records] == ["sent", "send_failed", "sent"]
    assert records[1].error == "recipient refused: 550 5.1.1 No such mailbox here"
    assert records[1].onboarding_link == f"{UI}/ui/onboarding?invitation_id=inv-b"
    assert [rcpt for _, rcpt, _ in handler.messages] == [["alice@company.com"], ["carol@company.com"]]


def test_earlier_errors_on_a_record_are_kept(serve) -> None:
    handler = Collector(reject=("bob@company.com",))
    settings = serve(handler)
    records = [record("alice@company.com", "inv-a"), record("bob@company.com", "inv-b")]
    for r in records:
        r.error = "link created but not recorded on the user"

    send_invitations(records, settings, DEFAULT_TEMPLATE)

    assert [(r.status, r.error) for r in records] == [
        ("sent", "link created but not recorded on the user"),
        ("send_failed", "link created but not recorded on the user; recipient refused: 550 5.1.1 No such mailbox here"),
    ]


def test_connection_refused_marks_all_send_failed() -> None:
    port = free_port()  # nothing listens there
    records = [record("alice@company.com", "inv-a"), record("bob@company.com", "inv-b")]

    send_invitations(records, SmtpSettings("127.0.0.1", port, "llm@company.com", "none"), DEFAULT_TEMPLATE)

    assert [r.status for r in records] == ["send_failed", "send_failed"]
    for r in records:
        assert r.error.startswith(f"SMTP connection to 127.0.0.1:{port} failed:")
        assert "refused" in r.error.lower()
        assert r.onboarding_link and r.onboarding_link not in r.error


def test_no_auth_without_credentials(serve) -> None:
    handler = Collector()
    settings = serve(handler, authenticator=handler.authenticate, auth_require_tls=False)

    send_invitations([record("alice@company.com")], settings, DEFAULT_TEMPLATE)

    assert handler.logins == []
    assert len(handler.messages) == 1


def test_logs_in_with_both_credentials(serve) -> None:
    handler = Collector()
    plain = serve(handler, authenticator=handler.authenticate, auth_require_tls=False, auth_exclude_mechanism=["LOGIN"])
    settings = SmtpSettings(plain.host, plain.port, plain.sender, "none", username="mailer", password=PASSWORD)
    rec = record("alice@company.com")

    send_invitations([rec], settings, DEFAULT_TEMPLATE)

    assert handler.logins == [("mailer", PASSWORD)]
    assert rec.status == "sent"


def test_login_failure_marks_all_failed_without_password(serve) -> None:
    handler = Collector()
    plain = serve(handler, authenticator=handler.authenticate, auth_require_tls=False, auth_exclude_mechanism=["LOGIN"])
    wrong = PASSWORD + "-wrong"
    settings = SmtpSettings(plain.host, plain.port, plain.sender, "none", username="mailer", password=wrong)
    records = [record("alice@company.com", "inv-a"), record("bob@company.com", "inv-b")]

    send_invitations(records, settings, DEFAULT_TEMPLATE)

    assert [r.status for r in records] == ["send_failed", "send_failed"]
    assert "535" in records[0].error
    assert all(wrong not in r.error and "inv-" not in r.error for r in records)
    assert handler.messages == []


def test_starttls_is_required_when_asked_for(serve) -> None:
    """A server without STARTTLS gets no mail at all: no silent fallback to plain text."""
    handler = Collector()
    plain = serve(handler)
    settings = SmtpSettings(plain.host, plain.port, plain.sender, "starttls")
    rec = record("alice@company.com")

    send_invitations([rec], settings, DEFAULT_TEMPLATE)

    assert rec.status == "send_failed"
    assert "STARTTLS" in rec.error
    assert handler.messages == []


class FakeSmtp:
    """Records the calls the starttls and tls paths make, for checks that need no certificates."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args = args
        self.kwargs = kwargs
        self.calls: list[str] = []
        self.sent: list[Any] = []

    def starttls(self, context: Any = None) -> None:
        self.calls.append("starttls")

    def login(self, user: str, password: str) -> None:
        self.calls.append(f"login {user}")

    def send_message(self, message: Any) -> None:
        self.calls.append(f"send {message['To']}")
        self.sent.append(message)

    def quit(self) -> None:
        self.calls.append("quit")


def test_starttls_path_secures_before_login_and_sending() -> None:
    fake = FakeSmtp()
    seen: list[SmtpSettings] = []

    def factory(settings: SmtpSettings) -> FakeSmtp:
        seen.append(settings)
        return fake

    settings = SmtpSettings("mail.company.com", 587, "llm@company.com", "starttls", "mailer", PASSWORD)
    records = [record("alice@company.com"), record("bob@company.com")]

    send_invitations(records, settings, DEFAULT_TEMPLATE, smtp_factory=factory)  # type: ignore[arg-type]

    assert seen == [settings]  # one connection for the batch
    assert fake.calls == ["starttls", "login mailer", "send alice@company.com", "send bob@company.com", "quit"]


def test_server_errors_echoing_secrets_are_scrubbed() -> None:
    """Some servers quote the rejected content back; the link and password must not reach the report."""

    class Echoing(FakeSmtp):
        def send_message(self, message: Any) -> None:
            text = f"rejected {message.get_content().strip()[-60:]} for {PASSWORD}"
            raise smtplib.SMTPDataError(554, text.encode())

    rec = record("alice@company.com", "inv-secret-token")
    settings = SmtpSettings("mail.company.com", 587, "llm@company.com", "none", "mailer", PASSWORD)

    send_invitations(
        [rec],
        settings,
        "Subject: hi\n\n$link\n",
        smtp_factory=lambda s: Echoing(),  # type: ignore[arg-type,return-value]
    )

    assert rec.status == "send_failed"
    assert rec.error is not None and rec.error.startswith("554 rejected ") and rec.error.endswith("*** for ***")
    assert "inv-secret-token" not in rec.error and PASSWORD not in rec.error
    assert rec.onboarding_link == f"{UI}/ui/onboarding?invitation_id=inv-secret-token"


def test_failure_reasons_are_scrubbed_like_all_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared scrubber: whole links become a marker, and secrets from the environment are hidden too."""
    monkeypatch.setenv("LITELLM_MASTER_KEY", "sk-master-distinctive")
    link = f"{UI}/ui/onboarding?invitation_id=inv-echoed"

    class Echoing(FakeSmtp):
        def send_message(self, message: Any) -> None:
            raise smtplib.SMTPDataError(554, f"no {link} here, key sk-master-distinctive, id inv-echoed".encode())

    rec = record("alice@company.com", "inv-echoed")
    send_invitations(
        [rec],
        SmtpSettings("h", 25, "llm@company.com", "none"),
        "Subject: hi\n\n$link\n",
        lambda s: Echoing(),  # type: ignore[arg-type,return-value]
    )

    assert rec.error == "554 no <link removed> here, key ***, id ***"


def test_header_injection_fails_that_record_only() -> None:
    fake = FakeSmtp()
    bad = record("eve@company.com\nBcc: all@company.com", "inv-e")
    good = record("alice@company.com", "inv-a")

    send_invitations(
        [bad, good],
        SmtpSettings("h", 25, "llm@company.com", "none"),
        DEFAULT_TEMPLATE,
        lambda s: fake,  # type: ignore[arg-type,return-value]
    )

    assert (bad.status, good.status) == ("send_failed", "sent")
    assert "linefeed" in (bad.error or "")
    assert fake.calls == ["send alice@company.com", "quit"]


def test_tls_uses_implicit_tls_and_no_starttls(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[FakeSmtp] = []

    def fake_ssl(*args: Any, **kwargs: Any) -> FakeSmtp:
        made.append(FakeSmtp(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(delivery.smtplib, "SMTP_SSL", fake_ssl)
    monkeypatch.setattr(delivery.smtplib, "SMTP", lambda *a, **k: pytest.fail("plain SMTP used for tls"))

    send_invitations(
        [record("alice@company.com")], SmtpSettings("mail.company.com", 465, "llm@company.com", "tls"), DEFAULT_TEMPLATE
    )

    (fake,) = made
    assert fake.args == ("mail.company.com", 465)
    assert fake.kwargs["context"] is not None
    assert fake.calls == ["send alice@company.com", "quit"]


# --------------------------------------------------------------------------- templates


def test_template_without_link_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "invite.txt"
    path.write_text("Subject: Welcome\n\nHello $email, the link is <link>, $$link is not it.\n", encoding="utf-8")

    with pytest.raises(ValueError, match=r"\$link"):
        load_template(str(path))
    with pytest.raises(ValueError, match=r"\$link"):
        send_invitations([], SmtpSettings("h", 1, "a@b.co"), "Subject: x\n\nno link\n")


@pytest.mark.parametrize(
    "text, message",
    [
        ("Hello $link\n", "Subject"),
        ("Subject: hi\nHello $link\n", "Subject"),
        ("Subject: hi $name\n\n$link\n", r"unknown placeholder \$name"),
        ("Subject: hi\n\n$link costs 5$\n", "invalid placeholder"),
    ],
)
def test_malformed_templates_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        send_invitations([], SmtpSettings("h", 1, "a@b.co"), text)


def test_default_template_is_valid() -> None:
    assert load_template(None) == DEFAULT_TEMPLATE
    assert DEFAULT_TEMPLATE.startswith("Subject: ")


# --------------------------------------------------------------------------- settings


def test_settings_from_env_defaults() -> None:
    settings = SmtpSettings.from_env({"SMTP_HOST": " mail.company.com ", "SMTP_FROM": "llm@company.com"})
    assert settings == SmtpSettings("mail.company.com", 587, "llm@company.com", "starttls", None, None)
    assert not settings.login


@pytest.mark.parametrize("security, port", [("starttls", 587), ("TLS", 465), ("none", 25)])
def test_default_port_follows_security(security: str, port: int) -> None:
    env = {"SMTP_HOST": "h", "SMTP_FROM": "a@b.co", "SMTP_SECURITY": security}
    assert SmtpSettings.from_env(env, allow_insecure=True).port == port
    assert SmtpSettings.from_env({**env, "SMTP_PORT": "2525"}, allow_insecure=True).port == 2525


@pytest.mark.parametrize("security", ["none", "NONE", " none "])
def test_plain_text_smtp_is_refused_unless_allowed(security: str) -> None:
    env = {
        "SMTP_HOST": "h",
        "SMTP_FROM": "a@b.co",
        "SMTP_SECURITY": security,
        "SMTP_USERNAME": "u",
        "SMTP_PASSWORD": PASSWORD,
    }

    with pytest.raises(ValueError) as caught:
        SmtpSettings.from_env(env)

    assert (
        str(caught.value)
        == "SMTP_SECURITY=none sends onboarding links in clear text; pass --allow-insecure-smtp to allow it"
    )
    assert PASSWORD not in str(caught.value)
    assert SmtpSettings.from_env(env, allow_insecure=True).security == "none"


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_encrypted_smtp_needs_no_permission(security: str) -> None:
    env = {"SMTP_HOST": "h", "SMTP_FROM": "a@b.co", "SMTP_SECURITY": security}
    assert SmtpSettings.from_env(env).security == security
    assert SmtpSettings.from_env(env, allow_insecure=True).security == security


def test_settings_with_credentials() -> None:
    env = {"SMTP_HOST": "h", "SMTP_FROM": "a@b.co", "SMTP_USERNAME": "u", "SMTP_PASSWORD": PASSWORD}
    settings = SmtpSettings.from_env(env)
    assert (settings.username, settings.password, settings.login) == ("u", PASSWORD, True)


@pytest.mark.parametrize(
    "change, variable",
    [
        ({"SMTP_HOST": ""}, "SMTP_HOST"),
        ({"SMTP_FROM": None}, "SMTP_FROM"),
        ({"SMTP_FROM": "not an address"}, "SMTP_FROM"),
        ({"SMTP_PORT": "smtp"}, "SMTP_PORT"),
        ({"SMTP_PORT": "70000"}, "SMTP_PORT"),
        ({"SMTP_SECURITY": "ssl"}, "SMTP_SECURITY"),
        ({"SMTP_USERNAME": None}, "SMTP_USERNAME"),
        ({"SMTP_USERNAME": "u", "SMTP_PASSWORD": ""}, "SMTP_PASSWORD"),
    ],
)
def test_bad_settings_name_the_variable_and_hide_the_password(change: dict[str, str | None], variable: str) -> None:
    env = {"SMTP_HOST": "h", "SMTP_FROM": "a@b.co", "SMTP_USERNAME": "u", "SMTP_PASSWORD": PASSWORD}
    env.update(change)
    env = {k: v for k, v in env.items() if v is not None}

    with pytest.raises(ValueError, match=variable) as caught:
        SmtpSettings.from_env(env)
    assert PASSWORD not in str(caught.value)


def test_password_is_never_in_repr_or_str() -> None:
    settings = SmtpSettings("h", 587, "a@b.co", "starttls", "u", PASSWORD)
    for text in (repr(settings), str(settings), f"{settings}", repr([settings])):
        assert PASSWORD not in text
        assert "password='***'" in text
    assert "password=None" in repr(SmtpSettings("h", 587, "a@b.co"))


def test_a_mailer_keeps_one_connection_for_links_handed_over_one_at_a_time(serve) -> None:
    handler = Collector()
    settings = serve(handler)
    opened: list[SmtpSettings] = []

    def factory(chosen: SmtpSettings) -> smtplib.SMTP:
        opened.append(chosen)
        return smtplib.SMTP(chosen.host, chosen.port, timeout=10)

    mailer = Mailer(settings, DEFAULT_TEMPLATE, smtp_factory=factory)
    records = [record(f"user{i}@company.com", f"inv-{i}") for i in range(3)]
    try:
        for one in records:  # as the executor does: each link the moment it exists
            mailer.send(one)
            assert one.status == "sent"
    finally:
        mailer.close()
    assert len(opened) == 1 and len(handler.messages) == 3


def test_a_refused_connection_is_not_retried_for_every_link_in_the_run() -> None:
    attempts: list[int] = []

    def refusing(settings: SmtpSettings) -> smtplib.SMTP:
        attempts.append(1)
        raise ConnectionRefusedError(111, "Connection refused")

    mailer = Mailer(SmtpSettings("127.0.0.1", 1, "a@b.co", "none"), DEFAULT_TEMPLATE, smtp_factory=refusing)
    records = [record(f"user{i}@company.com", f"inv-{i}") for i in range(3)]
    for one in records:
        mailer.send(one)
    mailer.close()
    assert len(attempts) == 1
    assert all(
        r.status == "send_failed" and "SMTP connection to 127.0.0.1:1 failed" in (r.error or "") for r in records
    )
