"""`riskhub dlq list` prints ids and errors exactly as they are (they are pasted into replay)."""

from __future__ import annotations

from rich.console import Console

from riskhub.bus.dlq import DlqEntry
from riskhub.cli.data import dlq_table


def test_ids_and_errors_print_as_they_are() -> None:
    entry = DlqEntry(
        id="dlq:boom:0:3",  # topic "boom": rich made ":boom:" an emoji
        key=b"w1",
        error_type="ValueError",
        error_message="[bold]not[/bold] markup",
        attempts=3,
        topic="boom",
        partition=0,
        offset=3,
        correlation_id=None,
        original_event={"id": "e1", "data": {"world_id": "w1", "version": "v[1]"}},
        original_value=None,
    )
    console = Console(record=True, width=200)
    console.print(dlq_table([entry]))
    text = console.export_text()
    assert "dlq:boom:0:3" in text and "v[1]" in text and "ValueError: [bold]not[/bold] markup" in text
