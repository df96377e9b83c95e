"""Tell a team's chat what a promotion or rollback did: a Slack-compatible incoming webhook.

The payload has ``text`` (what Slack shows in notifications, and what Mattermost, Rocket.Chat
and Teams' Slack-compatible endpoints read) and ``blocks`` for Slack itself. A failed
notification is reported to the caller, never raised: it must not undo a promotion.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from platformctl.errors import redact
from platformctl.gates.results import GateResult, Verdict
from platformctl.httpapi import TIMEOUT_SECONDS
from platformctl.model import Environment

_MARKS = {
    Verdict.passed: "✓",
    Verdict.failed: "✗",
    Verdict.skipped: "-",
    Verdict.overridden: "!",
}


@dataclass(frozen=True)
class Event:
    action: str  # promote | rollback
    environment: Environment
    subject: str
    succeeded: bool
    detail: str  # what happened, or why it failed
    actor: str
    gates: list[GateResult] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        outcome = "succeeded" if self.succeeded else "FAILED"
        text = f"{'✅' if self.succeeded else '❌'} {self.subject}: {outcome}"
        blocks: list[dict[str, Any]] = [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*{text}*\n{self.detail}\nby {self.actor}"},
            }
        ]
        if self.gates:
            summary = ", ".join(f"{_MARKS[g.verdict]} {g.subject}" for g in self.gates)
            blocks.append(
                {"type": "context", "elements": [{"type": "mrkdwn", "text": f"gates: {summary}"}]}
            )
        return {"text": text, "blocks": blocks}


def webhook_url(environment: Environment) -> str | None:
    if environment.webhook_url:
        return environment.webhook_url
    if environment.webhook_url_env:
        return os.environ.get(environment.webhook_url_env) or None
    return None


def send(event: Event) -> str | None:
    """Post the event to the environment's webhook; what went wrong, or None."""
    environment = event.environment
    url = webhook_url(environment)
    if url is None:
        # A laptop has no webhook secret, and a warning on every local run would teach people to
        # ignore warnings; in CI (which sets CI) the unset variable is a misconfiguration.
        if environment.webhook_url_env and os.environ.get("CI"):
            return f"not notified: ${environment.webhook_url_env} is not set"
        return None
    import httpx

    # the URL of an incoming webhook is its secret: messages name the host only
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    if host is None or urlsplit(url).scheme not in ("http", "https"):
        return "notification failed: the webhook URL is not an http(s) URL with a host"
    body = redact(json.dumps(event.payload())).encode()
    headers = {"Content-Type": "application/json"}
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=TIMEOUT_SECONDS)
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as error:
        return f"notification failed: webhook at {host} unreachable ({type(error).__name__})"
    if response.status_code >= 400:
        return f"notification failed: webhook at {host} answered {response.status_code}"
    return None
