"""What loading envtasks costs and leaves behind, checked in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_paramiko_is_loaded_only_when_used() -> None:
    out = run_python(
        "import sys, gc\n"
        "import envtasks\n"
        "import docker.transport.sshconn as sshconn\n"
        "print('loaded after import:', 'cryptography' in sys.modules)\n"
        "print('collector on:', gc.isenabled())\n"
        "client = sshconn.paramiko.SSHClient\n"
        "print('loaded after use:', 'cryptography' in sys.modules, client.__name__)\n"
        "print('same module:', sys.modules['paramiko'].SSHClient is client)\n"
        "real = sys.modules['paramiko']\n"
        "print('missing twice:', hasattr(sshconn.paramiko, 'nope'), hasattr(sshconn.paramiko, 'nope'))\n"
        "print('loaded once:', sys.modules['paramiko'] is real)\n"
    )
    assert out.splitlines() == [
        "loaded after import: False",
        "collector on: True",
        "loaded after use: True SSHClient",
        "same module: True",
        "missing twice: False False",
        "loaded once: True",
    ]


def test_a_collector_switched_off_before_stays_off() -> None:
    out = run_python("import gc\ngc.disable()\nimport envtasks\nprint(gc.isenabled())")
    assert out.strip() == "False"


def test_paramiko_already_loaded_is_left_alone() -> None:
    out = run_python(
        "import paramiko, sys\nimport envtasks\nprint(sys.modules['paramiko'] is paramiko)"
    )
    assert out.strip() == "True"
