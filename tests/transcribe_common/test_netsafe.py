"""The URL policy, and that httpx really goes through it on every connection (a real server on
loopback stands in for an internal service)."""

from __future__ import annotations

import ipaddress

import pytest

from tests.helpers import FileServer
from transcribe_common.netsafe import UnsafeUrl, UrlPolicy, client


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.31.255.255", "private"),
        ("192.168.0.1", "private"),
        ("fd00:ec2::254", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::ffff:192.168.0.1", "private"),
        ("240.0.0.1", "private"),
        ("192.0.2.1", "private"),  # documentation range (TEST-NET-1)
        ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("2002:a9fe:a9fe::", "link-local"),  # 6to4 wrapping 169.254.169.254, cloud metadata
        ("2001:0:7f00:1:0:0:0:0", "loopback"),  # Teredo whose server is 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:5601:fffe", "link-local"),  # Teredo whose client is 169.254.0.1
        ("fec0::1", "site-local"),
    ],
)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    refusal = UrlPolicy().refusal(ipaddress.ip_address(address))
    assert refusal is not None
    assert reason in refusal


def test_public_addresses_pass_and_the_allowlist_opens_networks() -> None:
    assert UrlPolicy().refusal(ipaddress.ip_address("93.184.215.14")) is None
    assert UrlPolicy().refusal(ipaddress.ip_address("2606:4700::1")) is None
    opened = UrlPolicy.from_setting("10.0.0.0/8, 127.0.0.1")
    assert opened.refusal(ipaddress.ip_address("10.9.9.9")) is None
    assert opened.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert opened.refusal(ipaddress.ip_address("127.0.0.2")) is not None


@pytest.mark.parametrize("url", ["ftp://example.org/a", "file:///etc/passwd", "gopher://x/", "http:///nohost"])
def test_only_http_and_https_with_a_host(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        UrlPolicy().check(url)


def test_the_check_runs_inside_the_connection(file_server: FileServer) -> None:
    """No check() beforehand: the client itself refuses, then connects once the allowlist opens
    loopback — by host name, to the address it checked."""
    port = file_server.url.rsplit(":", 1)[1]
    with client(UrlPolicy(), timeout=5, follow_redirects=True) as http, pytest.raises(UnsafeUrl, match="loopback"):
        http.get(f"http://localhost:{port}/url.txt")
    opened = UrlPolicy.from_setting("127.0.0.0/8,::1")
    with client(opened, timeout=5, follow_redirects=True) as http:
        response = http.get(f"http://localhost:{port}/url.txt")
    assert response.status_code == 200
    assert response.text.strip()


def test_an_allowlisted_host_name_is_opened_whatever_it_resolves_to() -> None:
    assert UrlPolicy.from_setting("localhost").check("http://localhost:9/") != []


def test_a_refusal_does_not_say_what_a_name_resolves_to() -> None:
    with pytest.raises(UnsafeUrl) as refused:
        UrlPolicy().check("http://localhost/a.mp3")
    message = str(refused.value)
    assert message.startswith("the URL's host localhost resolves to a loopback address")
    assert "127.0.0.1" not in message
    assert "::1" not in message
