"""Standard Webhooks signatures and the address rules of callback deliveries."""

import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.webhooks import (
    CallbackRefused,
    address_allowed,
    check_callback_url,
    check_literal_host,
    new_secret,
    sign,
    verify,
)
from worker.services import pinned_http

# The test vector of the Standard Webhooks reference libraries.
VECTOR = (
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "msg_p5jXN8AQM9LWM0D4loKWxJek",
    1614265330,
    '{"test": 2432232314}',
)


def test_signatures_match_the_reference_vector_and_fail_on_any_change():
    secret, message_id, timestamp, body = VECTOR
    header = sign(secret, message_id, timestamp, body)
    assert header == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert verify(secret, message_id, timestamp, body, f"v1,bogus {header}")
    assert not verify(secret, message_id, timestamp, body + " ", header)
    assert not verify(secret, message_id + "x", timestamp, body, header)
    assert not verify(new_secret(), message_id, timestamp, body, header)
    assert new_secret().startswith("whsec_") and new_secret() != new_secret()


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pw@hooks.example/x",
        "https://token@hooks.example/",
        "http://:pw@hooks.example",
        "ftp://h/x",
    ],
)
def test_urls_with_credentials_or_other_schemes_are_refused(url):
    with pytest.raises(CallbackRefused):
        check_callback_url(url)


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "::1",
                "fe80::1", "::ffff:127.0.0.1", "0.0.0.0", "224.0.0.1", "fd00::1"]
)  # fmt: skip
def test_non_global_addresses_are_refused_unless_allowlisted_by_address(address):
    ip = ipaddress.ip_address(address)
    assert not address_allowed(ip, [])
    assert address_allowed(ip, [address]) and address_allowed(ip, [str(ipaddress.ip_network(address))])
    with pytest.raises(CallbackRefused):
        check_literal_host(address, [])


def test_global_addresses_and_names_pass_the_literal_check():
    assert address_allowed(ipaddress.ip_address("93.184.216.34"), [])
    check_literal_host("hooks.example", [])


class _Echo(BaseHTTPRequestHandler):
    hosts: list[str] = []

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["content-length"]))
        self.hosts.append(self.headers["host"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return


def test_the_host_is_resolved_once_and_connected_to_by_address_with_its_host_header(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_port
    lookups: list[str] = []

    def fake_getaddrinfo(host, *_args, **_kwargs):
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(pinned_http.socket, "getaddrinfo", fake_getaddrinfo)
    try:
        with pytest.raises(CallbackRefused, match="127.0.0.1"):
            pinned_http.post_pinned(f"http://hooks.example:{port}/h", b"{}", {}, [], 2.0)
        status = pinned_http.post_pinned(f"http://hooks.example:{port}/h", b"{}", {}, ["127.0.0.0/8"], 2.0)
    finally:
        server.shutdown()
        server.server_close()
    assert status == 204 and lookups.count("hooks.example") == 2  # once per attempt, by this code
    assert set(lookups) == {"hooks.example", "127.0.0.1"}  # httpx only ever sees the address
    assert _Echo.hosts == [f"hooks.example:{port}"]
