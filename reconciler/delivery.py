"""Deliver onboarding links by email over SMTP.

LiteLLM's own invite email is unreliable, so the links the executor creates are sent
here, from the organisation's own mail server. Settings come only from the environment
(like the proxy key), the message is a plain-text ``string.Template`` that can be
replaced by a file, and one bad recipient never stops the others: every record ends up
``sent`` or ``send_failed`` with a short reason, and keeps its link either way so the
onboarding report still has it.

The SMTP password and the links are credentials: neither ever appears in a repr,
an exception message or a record's ``error``, and they are not sent without TLS
unless the operator explicitly allows it.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from string import Template
from typing import Literal, get_args

from .onboarding import InvitationRecord
from .secrets import scrub

Security = Literal["starttls", "tls", "none"]

#: The submission port for each mode when SMTP_PORT is not set (RFC 8314 for implicit TLS).
DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "tls": 465, "none": 25}
#: Seconds for connecting and for each SMTP command; a dead server must not hang apply.
TIMEOUT = 30.0
_MAX_REASON = 200

PLACEHOLDERS = ("email", "link", "expires_at", "proxy_url")

DEFAULT_TEMPLATE = """\
Subject: Your access to the LLM proxy at $proxy_url

Hello,

an account has been created for you ($email) on our LLM proxy at $proxy_url.

To set your password and sign in, open this link:

$link

The link is valid until $expires_at. It is personal: please do not forward it.
If you did not expect this email, you can ignore it.
"""


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send; built from the environment so no secret sits in a file or flag."""

    host: str
    port: int
    sender: str
    security: Security = "starttls"
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        # Settings end up in logs and tracebacks; the password must not.
        password = "'***'" if self.password else "None"
        return (
            f"SmtpSettings(host={self.host!r}, port={self.port}, sender={self.sender!r}, "
            f"security={self.security!r}, username={self.username!r}, password={password})"
        )

    @property
    def login(self) -> bool:
        """Whether to authenticate: only with both a user name and a password."""
        return bool(self.username and self.password)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, allow_insecure: bool = False) -> SmtpSettings:
        """Read SMTP_* variables; raise ``ValueError`` naming the variable that is missing or wrong.

        ``SMTP_SECURITY=none`` needs ``allow_insecure``: the messages carry onboarding
        links, which are credentials, so plain text must be a deliberate choice.
        """
        security = _security(_get(environ, "SMTP_SECURITY") or "starttls")
        if security == "none" and not allow_insecure:
            raise ValueError(
                "SMTP_SECURITY=none sends onboarding links in clear text; pass --allow-insecure-smtp to allow it"
            )
        username = _get(environ, "SMTP_USERNAME")
        # Not stripped: a password may legitimately start or end with a space.
        password = environ.get("SMTP_PASSWORD") or None
        if bool(username) != bool(password):
            present, missing = ("SMTP_USERNAME", "SMTP_PASSWORD") if username else ("SMTP_PASSWORD", "SMTP_USERNAME")
            raise ValueError(f"{present} is set but {missing} is not; set both to log in, or neither")
        return cls(
            host=_required(environ, "SMTP_HOST"),
            port=_port(_get(environ, "SMTP_PORT"), security),
            sender=_sender(_required(environ, "SMTP_FROM")),
            security=security,
            username=username,
            password=password,
        )


def _get(environ: Mapping[str, str], name: str) -> str | None:
    """A variable's trimmed value; empty counts as unset (CI often exports empty variables)."""
    return (environ.get(name) or "").strip() or None


def _required(environ: Mapping[str, str], name: str) -> str:
    value = _get(environ, name)
    if value is None:
        raise ValueError(f"{name} is not set; it is required to send invitations by email")
    return value


def _security(value: str) -> Security:
    choices = get_args(Security)
    if value.lower() not in choices:
        raise ValueError(f"SMTP_SECURITY is {value!r}; expected one of {', '.join(choices)}")
    return value.lower()  # type: ignore[return-value]


def _port(value: str | None, security: Security) -> int:
    if value is None:
        return DEFAULT_PORTS[security]
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"SMTP_PORT is {value!r}; expected a port number between 1 and 65535")
    return int(value)


def _sender(value: str) -> str:
    if "@" not in parseaddr(value)[1]:
        raise ValueError(f"SMTP_FROM is {value!r}; expected an address such as 'LLM proxy <llm@example.com>'")
    return value


# --------------------------------------------------------------------------- the template


def load_template(path: str | None) -> str:
    """The message template: the file at ``path``, or the built-in one.

    Validated here, before anything is sent, so a typo in a custom template fails
    the run up front instead of producing half a batch of broken emails.
    """
    template = DEFAULT_TEMPLATE if path is None else Path(path).read_text(encoding="utf-8")
    _split_template(template)
    return template


def _split_template(template: str) -> tuple[Template, Template]:
    """The subject and body templates; ``ValueError`` unless well formed and the body has ``$link``."""
    head, blank, body = template.replace("\r\n", "\n").partition("\n\n")
    if not blank or "\n" in head or not head.startswith("Subject:"):
        raise ValueError("the invitation template must start with a 'Subject: ...' line followed by a blank line")
    subject = Template(head[len("Subject:") :].strip())
    message = Template(body)
    sample = {name: f"\0{name}\0" for name in PLACEHOLDERS}
    try:
        subject.substitute(sample)  # only to reject unknown placeholders in the subject too
        rendered = message.substitute(sample)
    except KeyError as exc:
        raise ValueError(
            f"the invitation template uses an unknown placeholder ${exc.args[0]}; "
            f"available: {', '.join('$' + name for name in PLACEHOLDERS)}"
        ) from None
    except ValueError as exc:
        raise ValueError(
            f"the invitation template has an invalid placeholder ({exc}); write $$ for a literal $"
        ) from None
    if sample["link"] not in rendered:
        raise ValueError("the invitation template body must contain $link, or the email is useless")
    return subject, message


# --------------------------------------------------------------------------- sending

SmtpFactory = Callable[[SmtpSettings], smtplib.SMTP]


def _connect(settings: SmtpSettings) -> smtplib.SMTP:
    """The default factory: an open connection, implicitly encrypted for ``tls``."""
    if settings.security == "tls":
        return smtplib.SMTP_SSL(settings.host, settings.port, timeout=TIMEOUT, context=ssl.create_default_context())
    return smtplib.SMTP(settings.host, settings.port, timeout=TIMEOUT)


class Mailer:
    """One SMTP connection for a whole apply, opened at the first link and kept open, so each
    link is mailed the moment it exists without a handshake per user.

    ``send`` never raises for mail problems: the record becomes ``sent`` or ``send_failed``
    (reason appended to ``error``, scrubbed) and keeps its link for the report. A server that
    refuses the connection is not asked again in the same run: every later record fails with
    the same reason, and the next apply delivers them (their delivery state says so).
    Only a malformed template raises ``ValueError``, here, before anything is sent.
    """

    def __init__(self, settings: SmtpSettings, template: str, smtp_factory: SmtpFactory | None = None):
        self.settings = settings
        self._subject, self._body = _split_template(template)
        self._factory = smtp_factory or _connect
        self._smtp: smtplib.SMTP | None = None
        self._refused: str | None = None

    def send(self, record: InvitationRecord) -> None:
        if not record.onboarding_link:
            return
        # Link first, then its id: a server quoting part of a link still must not leak the token.
        secrets = [self.settings.password or "", record.onboarding_link, record.invitation_id or ""]
        if self._smtp is None and self._refused is None:
            try:
                self._smtp = _open(self.settings, self._factory)
            except (OSError, ValueError) as exc:
                self._refused = f"SMTP connection to {self.settings.host}:{self.settings.port} failed: {_reason(exc)}"
        if self._smtp is None:
            _fail(record, self._refused or "no SMTP connection", secrets)
            return
        _send_one(
            self._smtp, record, lambda: _message(record, self.settings.sender, self._subject, self._body), secrets
        )

    def close(self) -> None:
        if self._smtp is not None:
            _close(self._smtp)
            self._smtp = None


def send_invitations(
    records: list[InvitationRecord],
    settings: SmtpSettings,
    template: str,
    smtp_factory: SmtpFactory | None = None,
) -> None:
    """Email each record's link over one connection (see ``Mailer``); update the records in place."""
    mailer = Mailer(settings, template, smtp_factory)
    try:
        for record in records:
            mailer.send(record)
    finally:
        mailer.close()


def _open(settings: SmtpSettings, factory: SmtpFactory) -> smtplib.SMTP:
    """Connect, secure and log in; STARTTLS never falls back to plain text if the server lacks it."""
    smtp = factory(settings)
    try:
        if settings.security == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        if settings.login:
            smtp.login(settings.username or "", settings.password or "")
    except BaseException:
        _close(smtp)
        raise
    return smtp


def _message(record: InvitationRecord, sender: str, subject: Template, body: Template) -> EmailMessage:
    """One plain-text message; Date and Message-ID are set because spam filters penalise their absence."""
    link = record.onboarding_link or ""
    values = {
        "email": record.email,
        "link": link,
        "expires_at": str(record.expires_at)[:10] if record.expires_at else "unknown",
        # The link is "<ui base>/ui/onboarding?...": the base is where the user signs in.
        "proxy_url": link.split("/ui/onboarding", 1)[0],
    }
    message = EmailMessage()
    message["Subject"] = subject.substitute(values)
    message["From"] = sender
    message["To"] = record.email
    message["Date"] = formatdate(localtime=True)
    # An explicit domain: the default looks up this host's FQDN, which can stall on DNS.
    message["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2])
    message.set_content(body.substitute(values))
    return message


def _send_one(
    smtp: smtplib.SMTP, record: InvitationRecord, build: Callable[[], EmailMessage], secrets: list[str]
) -> None:
    """Build and send one message; a bad header (ValueError) fails this record only."""
    try:
        smtp.send_message(build())
    except (OSError, ValueError) as exc:  # smtplib.SMTPException is an OSError
        _fail(record, _reason(exc), secrets)
        return
    record.status = "sent"  # an earlier error (e.g. link not recorded on the user) is kept


def _fail(record: InvitationRecord, reason: str, secrets: list[str]) -> None:
    """Mark ``record`` failed; servers quote what they reject, so the reason is scrubbed like all output."""
    reason = scrub(reason, extra=secrets)
    record.status = "send_failed"
    # Appended, not replaced: an error from creating the link still matters to whoever reads the report.
    record.error = "; ".join(filter(None, [record.error, reason[:_MAX_REASON]]))


def _reason(exc: BaseException) -> str:
    """A short, human reason: the server's code and text rather than smtplib's tuples."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        code, text = next(iter(exc.recipients.values()))
        return f"recipient refused: {code} {_decode(text)}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_decode(exc.smtp_error)}"
    return str(exc) or type(exc).__name__


def _decode(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text


def _close(smtp: smtplib.SMTP) -> None:
    """Say QUIT politely, but never let closing turn a delivered batch into an error."""
    try:
        smtp.quit()
    except (OSError, ValueError):
        smtp.close()
