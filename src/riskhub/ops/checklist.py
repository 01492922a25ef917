"""The deployment checklist as data: one ``Finding`` per checklist line, a ``Report`` of them.

    ok     the line holds                                      exit 0
    warn   it holds only partly, or could not be checked       exit 1
    fail   it does not hold: the hub is not deployed right     exit 2

A report exits with its most serious state. Details name settings, services and fingerprints,
never a secret (URLs are shown without their password).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

from rich.table import Table
from rich.text import Text

from riskhub.errors import RiskHubError


class State(StrEnum):
    """How one checklist line stands."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


EXIT_CODES = {State.OK: 0, State.WARN: 1, State.FAIL: 2}
_STYLES = {State.OK: "green", State.WARN: "yellow", State.FAIL: "bold red"}

# What a check finds: its state and a one-line detail.
Verdict = tuple[State, str]


def worst(states: Iterable[State]) -> State:
    """The most serious state (OK for none)."""
    return max(states, key=EXIT_CODES.__getitem__, default=State.OK)


def verdict(facts: str, problems: Iterable[Verdict]) -> Verdict:
    """The facts of a line and what is wrong with them, as one verdict."""
    found = list(problems)
    detail = "; ".join([facts, *(text for _, text in found)]) if facts else "; ".join(t for _, t in found)
    return worst(state for state, _ in found), detail


@dataclass(frozen=True, slots=True)
class Finding:
    """One checklist line: its name, state and what was found."""

    line: str
    state: State
    detail: str

    def as_dict(self) -> dict[str, str]:
        """JSON-friendly view."""
        return {"line": self.line, "state": self.state.value, "detail": self.detail}


def not_checked(line: str, why: str) -> Finding:
    """A line that depends on one that failed: a warning, so the failure is not counted twice."""
    return Finding(line, State.WARN, f"not checked: {why}")


async def guarded(line: str, check: Awaitable[Verdict], timeout_s: float) -> Finding:
    """Run one check: a service that does not answer in time, or an error, fails its line with
    the reason, never the whole doctor (the doctor's one error boundary)."""
    try:
        state, detail = await asyncio.wait_for(check, timeout_s)
    except TimeoutError:
        return Finding(line, State.FAIL, f"no answer within {timeout_s:g} s")
    except RiskHubError as exc:
        return Finding(line, State.FAIL, exc.message)
    except Exception as exc:  # a doctor reports what it could not check, it does not crash
        return Finding(line, State.FAIL, f"{type(exc).__name__}: {exc}")
    return Finding(line, state, detail)


def redacted(url: str) -> str:
    """A service URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True, slots=True)
class Report:
    """Every line of one doctor run, in checklist order."""

    findings: list[Finding]

    @property
    def state(self) -> State:
        """The most serious state."""
        return worst(f.state for f in self.findings)

    @property
    def exit_code(self) -> int:
        """0 all good, 1 warnings, 2 failures."""
        return EXIT_CODES[self.state]

    def summary(self) -> str:
        """``riskhub doctor: FAIL (8 ok, 1 warn, 2 fail)``."""
        counts = ", ".join(f"{sum(f.state is s for f in self.findings)} {s.value}" for s in State)
        return f"riskhub doctor: {self.state.value.upper()} ({counts})"

    def to_json(self) -> str:
        """Machine-readable report."""
        lines = [f.as_dict() for f in self.findings]
        return json.dumps({"state": self.state.value, "exit_code": self.exit_code, "lines": lines}, indent=2)

    def table(self) -> Table:
        """One row per line: line, state, detail (cells as ``Text``: details are not markup)."""
        table = Table("line", "state", "detail", title="riskhub deployment checklist")
        for f in self.findings:
            table.add_row(Text(f.line), Text(f.state.value.upper(), style=_STYLES[f.state]), Text(f.detail))
        return table
