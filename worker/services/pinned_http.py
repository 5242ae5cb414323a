"""POST to a URL at the address its host resolved to once, with the Host header and TLS name kept."""

import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

import httpx

from app.webhooks import CallbackRefused, address_allowed, check_callback_url


def resolve_once(host: str, port: int, allowlist: list[str]) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The first address of the host, refused unless it is global or allowlisted by address."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise CallbackRefused("callback_unresolved", f"callback host {host!r} did not resolve")
    address = ipaddress.ip_address(infos[0][4][0])
    if not address_allowed(address, allowlist):
        raise CallbackRefused(
            "callback_address_refused",
            f"callback host {host!r} resolved to {address}, a loopback, private, link-local or otherwise "
            "non-public address; the operator can allow it with webhook_allowed_addresses",
        )
    return address


def post_pinned(url: str, body: bytes, headers: dict[str, str], allowlist: list[str], timeout: float) -> int:
    """POST `body` and return the answer's status; the answer's body is never read.

    CallbackRefused for a refused URL or address; OSError or httpx.HTTPError when the attempt fails.
    """
    scheme, host, port = check_callback_url(url)
    address = resolve_once(host, port, allowlist)
    target = f"[{address}]" if address.version == 6 else str(address)
    parts = urlsplit(url)
    pinned = urlunsplit((scheme, f"{target}:{port}", parts.path or "/", parts.query, ""))
    default_port = port == (443 if scheme == "https" else 80)
    host_header = host if default_port else f"{host}:{port}"
    extensions = {"sni_hostname": host} if scheme == "https" else {}
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        request = client.build_request(
            "POST", pinned, content=body, headers={**headers, "host": host_header}, extensions=extensions
        )
        response = client.send(request, stream=True)
        response.close()
        return response.status_code
