"""The README's quick start, word for word, against a real `riskhub serve` on a temp data dir:
each answer is what the README says, after a coffee break (a pause longer than the sample's
10 s TTL) and a restart too, with the token the first start generated and kept."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from live_hub import operator_env

from conftest import ROOT
from services import free_port, tcp_accepts

README = ROOT / "README.md"
README_URL = "http://127.0.0.1:8000"  # `make run`'s; the test's hub listens on a free port instead
_FENCE = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
COFFEE_BREAK_S = 11  # longer than the sample's ttl_sec (10), which the quick start must outlive


def quick_start() -> list[str]:
    """The commands of the README's quick start (the ```sh block that uses $HUB_TOKEN), with
    ``\\`` continuations joined."""
    [block] = [body for body in _FENCE.findall(README.read_text()) if "HUB_TOKEN" in body]
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def test_the_quick_start_has_the_commands_and_answers_the_readme_promises() -> None:
    export, publish, latest = quick_start()
    assert export == "export HUB_TOKEN=$(cat riskhub-data/token)"
    assert publish.startswith(f"uv run riskhub publish --base-url {README_URL} --world w1 ")
    assert "--now --ttl-sec 3600" in publish and publish.endswith("# 201 created w1/v1-<now> blake3:...")
    assert latest.startswith(f'curl -H "Authorization: Bearer $HUB_TOKEN" {README_URL}/risk-hub/worlds/w1/')
    assert latest.endswith("# 200: that snapshot, for an hour")
    assert "Run the publish line again and it\nstores a new snapshot" in README.read_text()


class Terminal:
    """A user's directory and shell: the README's relative paths resolve as in a checkout, and
    `uv run` finds the project (UV_PROJECT); the hub runs from here, as `make run` would."""

    def __init__(self, home: Path) -> None:
        self.home = home
        (home / "operations").symlink_to(ROOT / "operations")
        env = {k: v for k, v in operator_env().items() if not k.startswith("RISKHUB_")}
        self.env = {**env, "UV_PROJECT": str(ROOT)}
        self.env.pop("HUB_TOKEN", None)
        self.port = free_port()
        self.hub: subprocess.Popen[str] | None = None

    def start_hub(self) -> str:
        """`riskhub serve` (what `make run` runs); its banner up to the `try:` hint."""
        self.hub = subprocess.Popen(
            [sys.executable, "-m", "riskhub.cli", "serve", "--port", str(self.port)],
            cwd=self.home,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.hub.stdout is not None
        banner = ""
        for line in self.hub.stdout:
            banner += line
            if line.startswith("try:"):
                break
        deadline = time.monotonic() + 30
        while not tcp_accepts(self.port):
            assert time.monotonic() < deadline, banner
            time.sleep(0.05)
        return banner

    def stop_hub(self) -> None:
        """Ctrl-C, as the README says."""
        assert self.hub is not None
        self.hub.send_signal(signal.SIGINT)
        self.hub.communicate(timeout=15)
        assert self.hub.returncode == 0
        self.hub = None

    def run(self, commands: list[str]) -> list[tuple[int, str]]:
        """The commands in one shell, as pasted; each one's exit code and output."""
        script = "".join(
            f"printf '@@start\\n'\n{command.replace(README_URL, f'http://127.0.0.1:{self.port}')}\n"
            'printf "\\n@@exit %s\\n" "$?"\n'
            for command in commands
        )
        result = subprocess.run(
            ["bash", "-c", script], cwd=self.home, env=self.env, capture_output=True, text=True, timeout=180
        )
        answers = re.findall(r"@@start\n(.*?)\n@@exit (\d+)\n", result.stdout, re.DOTALL)
        assert len(answers) == len(commands), result.stdout + result.stderr
        return [(int(code), output.rstrip("\n")) for output, code in answers]


def test_the_readme_quick_start_word_for_word_outlives_a_coffee_break_and_a_restart(tmp_path: Path) -> None:
    export, publish, latest = quick_start()
    terminal = Terminal(tmp_path)
    try:
        first_banner = terminal.start_hub()
        [(code, out), (published, stored), (read, answer)] = terminal.run([export, publish, latest])
        published_at = time.monotonic()
        assert (code, out) == (0, ""), out
        assert published == 0 and re.fullmatch(r"201 created w1/v1-\S+ blake3:[0-9a-f]{64}", stored), stored
        version = stored.split()[2].removeprefix("w1/")
        assert read == 0 and json.loads(answer)["version"] == version, answer
        assert json.loads(answer)["ttl_sec"] == 3600

        terminal.stop_hub()  # the coffee break: the hub is restarted meanwhile
        second_banner = terminal.start_hub()
        time.sleep(max(0.0, published_at + COFFEE_BREAK_S - time.monotonic()))

        [_, (read, answer)] = terminal.run([export, latest])
        assert read == 0 and json.loads(answer)["version"] == version, answer  # still the latest
        [_, (published, stored), (read, answer)] = terminal.run([export, publish, latest])
        assert published == 0 and stored.startswith("201 created w1/v1-"), stored
        newer = stored.split()[2].removeprefix("w1/")
        assert newer > version and json.loads(answer)["version"] == newer, answer
    finally:
        if terminal.hub is not None:
            terminal.stop_hub()
    token = (tmp_path / "riskhub-data" / "token").read_text().strip()
    assert first_banner.count(token) == 1 and token not in second_banner
    assert "read-write token: the one kept in" in second_banner
    assert os.stat(tmp_path / "riskhub-data" / "token").st_mode & 0o777 == 0o600
