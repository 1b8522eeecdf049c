"""`zhike simulate` refuses what it cannot do before it sends anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from zhike_runtime.testing.processes import free_port


def simulate(*options: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    zhike = Path(sys.executable).with_name("zhike")
    return subprocess.run(
        [str(zhike), "simulate", "--no-progress", *options],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_without_a_token_it_says_where_to_get_one() -> None:
    result = simulate("--token=", "--customers=2")
    assert result.returncode == 2
    assert "--token, ZHIKE_TOKEN, or --state-dir" in result.stderr


def test_a_state_directory_without_the_development_issuer_is_refused(tmp_path: Path) -> None:
    result = simulate("--token=", f"--state-dir={tmp_path}", "--customers=2")
    assert result.returncode == 2
    assert "no development issuer" in result.stderr
    assert not (tmp_path / "auth").exists()  # no key made that nothing would trust


def test_an_unreachable_service_is_one_line_and_exit_1() -> None:
    target = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = simulate("--token=any", "--customers=2", "--days=2", f"--identity-target={target}")
    assert result.returncode == 1
    assert result.stderr == f"zhike simulate: {target}: UNAVAILABLE: not reachable within 5 s\n"
