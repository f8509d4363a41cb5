"""Who may publish: the stream key from a publish name, and the allowlist and shared secret that
guard a server reachable from the internet.

A publish name is `<stream-key>[?query]`, as encoders send the last part of
`rtmp://host/<app>/<stream-key>?secret=...`. The query never reaches the disk or the status
pages: it may carry the secret.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import parse_qs

from ..storage.layout import check_name


class Refused(Exception):
    """This publish may not go ahead; the message is sent to the client as the error description."""


@dataclass(frozen=True)
class Publish:
    app: str
    stream_key: str
    params: dict[str, str]
    name: str  # as sent, query and all: only the recording, which strips it, takes it to disk


def parse_publish(app: str, name: str) -> Publish:
    key, _, query = name.partition("?")
    app = app.partition("?")[0].strip("/")
    for what, value in (("application name", app), ("stream key", key)):
        try:
            check_name(what, value)  # each names a folder
        except ValueError as exc:
            raise Refused(f"invalid {exc}") from None
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    return Publish(app, key, params, name)


@dataclass(frozen=True)
class AccessPolicy:
    """No allowed keys and no secret: anyone may publish any key."""

    allowed_keys: frozenset[str] = frozenset()
    secret: str | None = None

    @property
    def open(self) -> bool:
        return not self.allowed_keys and not self.secret

    def check(self, publish: Publish) -> None:
        if self.allowed_keys and publish.stream_key not in self.allowed_keys:
            raise Refused(f"stream key {publish.stream_key!r} is not allowed on this server")
        if self.secret:
            given = publish.params.get("secret", "")
            if not hmac.compare_digest(given.encode(), self.secret.encode()):
                raise Refused("wrong or missing secret: publish to rtmp://host/<app>/<stream-key>?secret=<secret>")
