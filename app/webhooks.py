"""Webhooks a receiver can trust: Standard Webhooks signatures and the address rules for callbacks.

Signature (https://www.standardwebhooks.com): each delivery carries `webhook-id` (the same on every
retry of one message), `webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature:
v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the base64-decoded part of the
tenant's secret `whsec_<base64>`.

Addresses: a callback URL may not carry credentials; its host is resolved once per attempt and the
request goes to that address (Host header and TLS name kept), so DNS cannot answer differently
between the check and the connection. Loopback, private, link-local and every other non-global
address is refused unless the operator allowlists it by address (`webhook_allowed_addresses`, IPs or
CIDR ranges).
"""

import base64
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
SECRET_BYTES = 32
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class CallbackRefused(ValueError):
    """A callback URL or address this service will not send to; `code` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def new_secret() -> str:
    """A fresh signing secret, `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` header value for one attempt."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, message_id: str, timestamp: int, body: str, header: str) -> bool:
    """Whether any `v1,` signature in a header matches (what a receiver does)."""
    expected = sign(secret, message_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in header.split(" "))


def check_callback_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable callback URL; CallbackRefused otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise CallbackRefused("callback_invalid", "callback_url must be an http or https URL")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise CallbackRefused(
            "callback_credentials",
            "callback_url must not carry credentials (user:password@); verify deliveries with the "
            "webhook signature instead",
        )
    if not parts.hostname:
        raise CallbackRefused("callback_invalid", "callback_url has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise CallbackRefused("callback_invalid", f"callback_url has an invalid port: {exc}") from exc
    return parts.scheme, parts.hostname, port


def _networks(allowlist: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The operator's allowlisted addresses and ranges."""
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in allowlist if entry.strip()]


def address_allowed(address: IPAddress, allowlist: Iterable[str]) -> bool:
    """Whether a resolved address may be connected to: global, or allowlisted by address."""
    mapped = getattr(address, "ipv4_mapped", None)
    target = mapped or address
    networks = _networks(allowlist)
    if any(candidate in network for candidate in {address, target} for network in networks):
        return True
    return target.is_global and not target.is_multicast


def check_literal_host(host: str, allowlist: Iterable[str]) -> None:
    """Refuse a host written as a non-global IP address (names are checked when resolved)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    if not address_allowed(address, allowlist):
        raise CallbackRefused(
            "callback_address_refused",
            f"callback address {address} is loopback, private, link-local or otherwise not public; "
            "the operator can allow it with webhook_allowed_addresses",
        )
