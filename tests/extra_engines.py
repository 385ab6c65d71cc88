"""A second real dockerd and a real sshd in front of it, started by the tests themselves."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

# The second engine's containers see a different /dev/shm size: a health check can tell them apart.
SECOND_SHM_KB = 81920


@dataclass
class SecondEngine:
    root: Path
    process: subprocess.Popen[bytes]
    index: int = 2

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def address(self) -> str:
        return f"unix://{self.socket}"

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.address)

    @property
    def bridge(self) -> str:
        return f"envt-br{self.index}"

    def stop(self) -> None:
        client = self.client()
        try:
            for container in client.containers.list(all=True):
                container.remove(force=True)
        finally:
            client.close()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)


def start_second_engine(root: Path, index: int = 2) -> SecondEngine:
    """dockerd with its own socket, data root, exec root, pid file and bridge (envt-br<index>)."""
    bridge = f"envt-br{index}"
    if shutil.which("dockerd") is None or shutil.which("ip") is None:
        raise RuntimeError("dockerd and ip are needed; run scripts/setup.sh")
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
    for command in (
        ["ip", "link", "add", bridge, "type", "bridge"],
        ["ip", "addr", "add", f"172.31.{248 + index}.1/24", "dev", bridge],
        ["ip", "link", "set", bridge, "up"],
    ):
        subprocess.run(command, check=True, capture_output=True)
    log = (root / "dockerd.log").open("wb")
    process = subprocess.Popen(
        [
            "dockerd",
            f"--host=unix://{root}/docker.sock",
            f"--data-root={root}/data",
            f"--exec-root={root}/exec",
            f"--pidfile={root}/docker.pid",
            f"--bridge={bridge}",
            "--iptables=false",
            "--ip-masq=false",
            "--ip=127.0.0.1",
            f"--default-shm-size={SECOND_SHM_KB // 1024}M",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    engine = SecondEngine(root, process, index)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the second dockerd exited; see {root}/dockerd.log")
        try:
            engine.client().close()  # connecting asks the engine for its API version
            return engine
        except docker.errors.DockerException:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"the second dockerd did not come up; see {root}/dockerd.log")


@dataclass
class Sshd:
    process: subprocess.Popen[bytes]
    port: int
    bin_dir: Path  # holds an `ssh` that knows the throwaway key: put it first on PATH

    def address(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}"

    def environ(self) -> dict[str, str]:
        return {"PATH": f"{self.bin_dir}:{os.environ.get('PATH', '')}"}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_sshd(root: Path, port: int, docker_host: str) -> Sshd:
    """sshd on 127.0.0.1 with a throwaway key; its sessions talk to ``docker_host``."""
    sshd = Path("/usr/sbin/sshd")
    if not sshd.is_file():
        raise RuntimeError("sshd is not installed; run scripts/setup.sh")
    root.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(exist_ok=True)
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True
        )
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    (root / "authorized_keys").chmod(0o600)
    config = root / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1:{port}\n"
        f"HostKey {root}/host_key\n"
        f"AuthorizedKeysFile {root}/authorized_keys\n"
        f"PidFile {root}/sshd.pid\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "StrictModes no\n"
        "UsePAM no\n"
        f"SetEnv DOCKER_HOST={docker_host}\n"
    )
    process = subprocess.Popen(
        [str(sshd), "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL
    )
    client_config = root / "ssh_config"
    client_config.write_text(
        "Host 127.0.0.1\n"
        f"  IdentityFile {root}/client_key\n"
        "  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n"
        "  LogLevel ERROR\n"
    )
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {client_config} "$@"\n')
    wrapper.chmod(0o755)
    deadline = time.monotonic() + 20
    probe = [str(wrapper), "-p", str(port), "root@127.0.0.1", "true"]
    while time.monotonic() < deadline:
        if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
            return Sshd(process, port, bin_dir)
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("sshd did not accept the throwaway key")
