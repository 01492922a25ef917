"""Token files, fingerprints and the client address behind proxies (pure logic, files only)."""

from __future__ import annotations

import hashlib
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from riskhub.api.network import client_address, within
from riskhub.tokens import TokenFileError, TokenSource, fingerprint, parse_token_lines

PROXIES = [ip_network("10.0.0.0/24")]


def test_a_tokens_file_has_one_token_per_line_with_comments_and_blank_lines() -> None:
    text = "# producers\nalpha-token\n\n  beta-token   # moved over on 2026-01-02\n#old-token\n"
    assert parse_token_lines(text) == ["alpha-token", "beta-token"]


def test_a_fingerprint_is_the_first_8_hex_of_the_sha256_and_never_the_token() -> None:
    token = "a-secret-token-of-forty-characters-xxxxx"
    assert fingerprint(token) == hashlib.sha256(token.encode()).hexdigest()[:8]
    assert token not in fingerprint(token)


def test_tokens_come_from_the_settings_and_the_files_without_duplicates(tmp_path: Path) -> None:
    (tmp_path / "rw").write_text("file-writer\nenv-writer\n")
    (tmp_path / "ro").write_text("# monitors\nfile-reader\n")
    source = TokenSource(("env-writer",), ("env-reader",), tmp_path / "rw", tmp_path / "ro")
    tokens = source.load()
    assert tokens.write == ("env-writer", "file-writer")
    assert tokens.read == ("env-reader", "file-reader")
    described = tokens.describe()
    assert fingerprint("file-writer") in described and "file-writer" not in described


def test_a_file_change_changes_the_signature(tmp_path: Path) -> None:
    path = tmp_path / "rw"
    path.write_text("one\n")
    source = TokenSource(write_file=path)
    before = source.signature()
    replacement = tmp_path / "rw.new"
    replacement.write_text("one\ntwo\n")
    replacement.replace(path)
    assert source.signature() != before
    assert source.load().write == ("one", "two")


def test_an_unreadable_tokens_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match=r"tokens file .*missing"):
        TokenSource(write_file=tmp_path / "missing").load()


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_address("192.0.2.7", "10.9.9.9", []) == ip_address("192.0.2.7")


def test_a_trusted_proxys_forwarded_for_names_the_client() -> None:
    assert client_address("10.0.0.5", "192.0.2.7", PROXIES) == ip_address("192.0.2.7")


def test_forwarded_for_is_read_from_the_right_skipping_trusted_proxies() -> None:
    # The client forged the left-most entry; the right-most untrusted hop is the real client.
    forwarded = "127.0.0.1, 198.51.100.4, 10.0.0.9"
    assert client_address("10.0.0.5", forwarded, PROXIES) == ip_address("198.51.100.4")


def test_an_untrusted_peers_forwarded_for_is_ignored() -> None:
    assert client_address("198.51.100.4", "10.0.0.1", PROXIES) == ip_address("198.51.100.4")


def test_a_garbage_hop_is_never_an_allowed_client() -> None:
    client = client_address("10.0.0.5", "unknown", PROXIES)
    assert client is None and not within(client, [ip_network("0.0.0.0/0")])


def test_an_ipv4_mapped_peer_counts_as_its_ipv4_address() -> None:
    assert within(ip_address("::ffff:127.0.0.1"), [ip_network("127.0.0.1/32")])
    assert not within(ip_address("::ffff:127.0.0.2"), [ip_network("127.0.0.1/32")])
