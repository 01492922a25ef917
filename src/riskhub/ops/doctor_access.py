"""The doctor's security lines: ``tokens`` and ``network_allowlist`` (runbook, Security).

Tokens are named by fingerprint only. Reading the token files is blocking: run these off the
event loop.
"""

from __future__ import annotations

import stat
from pathlib import Path

from riskhub.config import MIN_TOKEN_CHARS, Settings
from riskhub.ops.checklist import State, Verdict, verdict
from riskhub.tokens import TokenFileError, Tokens, TokenSource, fingerprint


def check_tokens(settings: Settings) -> Verdict:
    """Tokens configured (not generated), none both read and write, none short, files private."""
    source = TokenSource.from_settings(settings)
    if not source.configured:
        return State.FAIL, (
            "no RISKHUB_TOKENS or RISKHUB_TOKENS_FILE: `serve` would generate a token at every start,"
            " a different one on each replica"
        )
    try:
        tokens = source.load()
    except TokenFileError as exc:
        return State.FAIL, str(exc)
    facts = f"{tokens.describe()} from {_origins(settings)}"
    return verdict(facts, [*_token_problems(tokens), *_file_problems(source.files)])


def _origins(settings: Settings) -> str:
    named = [
        ("RISKHUB_TOKENS", bool(settings.tokens)),
        ("RISKHUB_READ_TOKENS", bool(settings.read_tokens)),
        (f"{settings.tokens_file}", settings.tokens_file is not None),
        (f"{settings.read_tokens_file}", settings.read_tokens_file is not None),
    ]
    return ", ".join(name for name, used in named if used)


def _token_problems(tokens: Tokens) -> list[Verdict]:
    problems: list[Verdict] = []
    if not tokens.write:
        problems.append((State.FAIL, "no read-write token: every write would be refused"))
    for token in sorted(set(tokens.write) & set(tokens.read)):
        problems.append((State.FAIL, f"{fingerprint(token)} is both a read-write and a read-only token"))
    for kind, group in (("read-write", tokens.write), ("read-only", tokens.read)):
        for token in group:
            if len(token) < MIN_TOKEN_CHARS:
                text = (
                    f"{fingerprint(token)} ({kind}) has {len(token)} characters, fewer than {MIN_TOKEN_CHARS}"
                )
                problems.append((State.FAIL, text))
    return problems


def _file_problems(files: tuple[Path, ...]) -> list[Verdict]:
    problems: list[Verdict] = []
    for path in files:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            problems.append((State.WARN, f"{path} is open to other users (mode {mode:o}): chmod 600"))
    return problems


def check_network(settings: Settings) -> Verdict:
    """The allowlist is set (the gateway and infra subnets); whose X-Forwarded-For is trusted."""
    networks = ", ".join(map(str, settings.allowed_networks))
    proxies = ", ".join(map(str, settings.trusted_proxies))
    if not networks:
        return State.WARN, (
            "RISKHUB_ALLOWED_NETWORKS is not set: any address may call the API; set it to the gateway"
            " and infra subnets, or make sure a network ACL in front of the hub does"
        )
    detail = f"only {networks} may call the API (/healthz: anyone)"
    return State.OK, detail + (f"; X-Forwarded-For trusted from {proxies}" if proxies else "")
