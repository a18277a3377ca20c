"""scripts/ensure-redis-server: what `make test` and `.ci/run` do about a missing redis-server.

Run with a PATH of stand-ins (`id`, `sudo`, `apt-get`, `redis-server`), so each machine it may
meet is played out without touching this one's packages.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ensure-redis-server"


def tool(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(0o755)


def run(bin_dir: Path) -> subprocess.CompletedProcess[str]:
    if not (bin_dir / "chmod").exists():
        (bin_dir / "chmod").symlink_to("/bin/chmod")  # the stand-ins' only outside tool
    env = {"PATH": str(bin_dir), "HOME": str(bin_dir)}
    return subprocess.run(
        ["/bin/sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_present_means_nothing_to_do(tmp_path: Path) -> None:
    tool(tmp_path, "redis-server", "exit 0")
    tool(tmp_path, "apt-get", f"echo called > {tmp_path}/apt-called")
    done = run(tmp_path)
    assert done.returncode == 0
    assert not (tmp_path / "apt-called").exists()


def test_root_installs_debians_package(tmp_path: Path) -> None:
    tool(tmp_path, "id", "echo 0")
    # The stand-in apt-get records its arguments and "installs" the binary.
    tool(
        tmp_path,
        "apt-get",
        f'echo "$@" >> {tmp_path}/apt-args\n'
        f'printf "#!/bin/sh\\nexit 0\\n" > {tmp_path}/redis-server\n'
        f"chmod 755 {tmp_path}/redis-server",
    )
    done = run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "install -y -q redis-server" in (tmp_path / "apt-args").read_text()
    assert "installing redis-server" in done.stderr


def test_without_root_or_sudo_it_says_how_in_one_sentence(tmp_path: Path) -> None:
    tool(tmp_path, "id", "echo 1000")
    tool(tmp_path, "sudo", "exit 1")  # sudo that wants a password
    tool(tmp_path, "apt-get", f"echo called > {tmp_path}/apt-called")
    done = run(tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "apt-get install -y redis-server" in lines[0]
    assert "REDIS_SERVER" in lines[0]
    assert not (tmp_path / "apt-called").exists()


def test_passwordless_sudo_is_used(tmp_path: Path) -> None:
    tool(tmp_path, "id", "echo 1000")
    tool(tmp_path, "sudo", f'echo "$@" >> {tmp_path}/sudo-args\nshift\n"$@"')
    tool(
        tmp_path,
        "apt-get",
        f'printf "#!/bin/sh\\nexit 0\\n" > {tmp_path}/redis-server\n'
        f"chmod 755 {tmp_path}/redis-server",
    )
    done = run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "apt-get install -y -q redis-server" in (tmp_path / "sudo-args").read_text()


def test_the_makefile_and_ci_call_it() -> None:
    root = SCRIPT.parents[1]
    makefile = (root / "Makefile").read_text()
    assert "test: install redis-server" in makefile
    assert "sh scripts/ensure-redis-server" in makefile
    assert "sh scripts/ensure-redis-server" in (root / ".ci" / "run").read_text()
    assert os.access(SCRIPT, os.X_OK)
