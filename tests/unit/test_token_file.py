"""The token `serve` keeps in its data dir: generated once, mode 0600, then reused."""

from __future__ import annotations

import stat
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from riskhub.cli.token_file import kept_token


def test_a_token_is_generated_once_with_mode_0600_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "token"
    first = kept_token(path)
    again = kept_token(path)
    assert first.generated and not again.generated
    assert first.value == again.value and len(first.value) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and not first.readable_by_others()
    assert [p.name for p in path.parent.iterdir()] == ["token"]  # no draft left behind
    assert first.value not in repr(first)


def test_starts_racing_on_one_data_dir_share_one_token(tmp_path: Path) -> None:
    path = tmp_path / "token"
    with ProcessPoolExecutor(max_workers=6) as pool:
        kept = list(pool.map(kept_token, [path] * 12))
    assert len({k.value for k in kept}) == 1
    assert sum(k.generated for k in kept) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["token"]
