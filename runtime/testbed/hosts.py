"""Hosts in namespaces on one machine (package docstring): bring them up, reach them over SSH, kill one, take them
all down.

Names carry a tag (the owning process id by default) so that two testbeds on one machine never collide and a
later testbed can sweep what a killed one left: ``tb<tag>h<i>`` (network namespace), ``tb<tag>v<i>`` (the
machine's end of the host's veth pair), ``tb<tag>br`` (the bridge). The bridge has the first address of the
testbed's /24 on the machine, so the machine itself (where ``ray up`` runs) reaches every host; traffic never
leaves the bridge.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INIT = Path(__file__).with_name("init.py")
RESULT = "RESULT="
"""the prefix of the line a script run by :meth:`Testbed.python` prints its JSON result on"""
_NAME = re.compile(r"^tb(\d+)(?:h\d+|br|v\d+)$")


class TestbedError(RuntimeError):
    """The testbed cannot be brought up here; the message says what is missing and what to do."""

    __test__ = False  # (not a pytest test class)


@dataclass(frozen=True)
class Host:
    """One host of a testbed."""

    name: str
    """``h0``, ``h1``, …; ``h0`` is the head by convention"""
    ip: str
    netns: str
    dir: Path
    """its own files: ``home`` (root's home there), ``ray`` (its ``/tmp/ray``), ``sshd_config``, ``host.log``"""


class Testbed:
    """``n`` hosts under ``root`` (a directory of the caller's, kept after ``down`` for its logs).

    ``env`` is exported in every login shell of every host (its ``~/.profile`` and ``~/.bashrc``), after the
    directory of this Python put first on ``PATH``: the hosts run the same installed environment as the machine.
    """

    __test__ = False

    def __init__(self, n: int, root: Path, *, tag: int | None = None, env: Mapping[str, str] | None = None) -> None:
        if n < 1:
            raise ValueError(f"a testbed needs at least one host, not {n}")
        self.tag = os.getpid() if tag is None else tag
        self.root = Path(root).resolve()
        self.env = dict(env or {})
        self.subnet = _free_subnet(self.tag)
        self.bridge = f"tb{self.tag}br"
        self.key = self.root / "id_ed25519"
        """the private key every host accepts for root (what a cluster file names as ``ssh_private_key``)"""
        self.hosts = [Host(f"h{i}", f"{self.subnet}.{10 + i}", f"tb{self.tag}h{i}", self.root / f"h{i}")
                      for i in range(n)]
        self._host_key = self.root / "ssh_host_ed25519_key"
        self._authorized = self.root / "authorized_keys"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._init_pids: dict[str, int] = {}
        if len(self.bridge) > 15:
            raise ValueError(f"testbed tag {self.tag} makes interface names longer than Linux's 15 characters")

    # --- up and down ------------------------------------------------------------------------------------------
    def __enter__(self) -> Testbed:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self, timeout_s: float = 20.0) -> None:
        """Make the bridge and every host, start each host's sshd, and wait until each accepts connections."""
        require()
        sweep()
        self.root.mkdir(parents=True, exist_ok=True)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tape-testbed", "-f", str(self.key))
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self._host_key))
        shutil.copy(self.key.with_suffix(".pub"), self._authorized)
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for i, host in enumerate(self.hosts):
            veth = f"tb{self.tag}v{i}"
            _run("ip", "netns", "add", host.netns)
            _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
            _run("ip", "link", "set", veth, "master", self.bridge, "up")
            _run("ip", "-n", host.netns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
            _run("ip", "-n", host.netns, "link", "set", "eth0", "up")
            _run("ip", "-n", host.netns, "link", "set", "lo", "up")
            self._start(host)
        self._wait(self.hosts, timeout_s)

    def revive(self, host: Host | str, timeout_s: float = 20.0) -> None:
        """Start a killed host again (a machine back from a power cut: nothing of its processes, its files kept)."""
        target = self.host(host) if isinstance(host, str) else host
        if target.name in self._init_pids:
            raise TestbedError(f"testbed host {target.name} is running: kill it first")
        self._start(target)
        self._wait([target], timeout_s)

    def _wait(self, hosts: list[Host], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for host in hosts:
            while not _accepts(host.ip, 22):
                if time.monotonic() > deadline or self._procs[host.name].poll() is not None:
                    raise TestbedError(f"testbed host {host.name} ({host.ip}): sshd did not come up in {timeout_s:.0f} s;"
                                       f" its log, {host.dir / 'host.log'}:\n{_tail(host.dir / 'host.log')}")
                time.sleep(0.05)

    def _start(self, host: Host) -> None:
        for sub in ("home", "ray"):
            (host.dir / sub).mkdir(parents=True, exist_ok=True)
        exports = [f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH"]
        exports += [f"export {k}={shlex.quote(v)}" for k, v in sorted(self.env.items())]
        for rc in (".profile", ".bashrc"):
            (host.dir / "home" / rc).write_text("\n".join(exports) + "\n")
        passwd = host.dir / "passwd"  # root's home: the host's own (not /root, which stays shared: pyenv lives there)
        passwd.write_text("".join(_home(line, host.dir / "home") for line in
                                  Path("/etc/passwd").read_text().splitlines(keepends=True)))
        (host.dir / "hostname").write_text(host.netns + "\n")  # Ray finds a host's address from its name
        (host.dir / "hosts").write_text("127.0.0.1 localhost\n" + "".join(f"{h.ip} {h.netns}\n" for h in self.hosts))
        config = host.dir / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress {host.ip}", "Port 22", f"HostKey {self._host_key}", f"PidFile {host.dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self._authorized}", "PermitRootLogin prohibit-password", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", "PrintMotd no", "PrintLastLog no",
            "MaxStartups 200", "MaxSessions 200", "AcceptEnv LANG LC_*", "Subsystem sftp internal-sftp", ""]))
        log = (host.dir / "host.log").open("ab")
        self._procs[host.name] = proc = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc",
             sys.executable, "-I", str(INIT), str(host.dir)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        self._init_pids[host.name] = _child_of(proc.pid)

    def down(self) -> None:
        """Kill every process of every host, delete the namespaces, the veths and the bridge. Idempotent."""
        for host in self.hosts:
            self.kill(host)
        for host in self.hosts:
            proc = self._procs.pop(host.name, None)
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)

    # --- using the hosts --------------------------------------------------------------------------------------
    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    def kill(self, host: Host | str) -> None:
        """Lose a host: SIGKILL its first process, so the kernel kills every process the host ran (its raylet, its
        workers, its sshd) at once, as a machine that loses power. Its address stays on the bridge, answering
        nothing."""
        name = host if isinstance(host, str) else host.name
        pid = self._init_pids.pop(name, None)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def ssh(self, host: Host | str, command: str, *, timeout: float | None = None, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on ``host`` over SSH in Ray's login shell (as ``ray up`` does), its output captured."""
        target = self.host(host) if isinstance(host, str) else host
        done = subprocess.run(self._argv(target, command), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
        if check and done.returncode != 0:
            raise TestbedError(f"on {target.name} ({target.ip}): {command!r} exited {done.returncode}:\n"
                               f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def popen(self, host: Host | str, command: str, log: Path) -> subprocess.Popen[bytes]:
        """Start ``command`` on ``host`` over SSH without waiting, its output to ``log``."""
        target = self.host(host) if isinstance(host, str) else host
        with log.open("ab") as out:
            return subprocess.Popen(self._argv(target, command), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)

    def python(self, host: Host | str, script: str, *, cwd: Path | str | None = None, timeout: float = 600) -> Any:
        """Run the Python ``script`` on ``host`` (in ``cwd``): what it printed on a line ``RESULT=<json>``, decoded;
        a :class:`TestbedError` with its output when it failed or printed none."""
        done = self.ssh(host, (f"cd {shlex.quote(str(cwd))} && " if cwd else "") + f"python -c {shlex.quote(script)}",
                        timeout=timeout)
        return result_of(done, f"a script on {host if isinstance(host, str) else host.name}")

    def _argv(self, target: Host, command: str) -> list[str]:
        from ..cluster_check import SshRunner

        return SshRunner("root", str(self.key)).argv(target.ip, command)


def result_of(done: subprocess.CompletedProcess[str], what: str) -> Any:
    """The JSON a script printed on its ``RESULT=`` line; a :class:`TestbedError` naming ``what``, with its output,
    when it printed none."""
    line = next((x for x in done.stdout.splitlines() if x.startswith(RESULT)), None)
    if line is None:
        raise TestbedError(f"{what} printed no {RESULT} line (exit {done.returncode}):\n{done.stdout[-3000:]}\n"
                           f"{done.stderr[-3000:]}")
    return json.loads(line[len(RESULT):])


def sweep() -> list[str]:
    """Delete the namespaces and bridges a testbed whose process is gone left behind; what was deleted."""
    gone = []
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout.split()
    links = [line.split()[0].split("@")[0] for line in
             subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=False).stdout.splitlines()]
    for name in [*names, *links]:
        match = _NAME.match(name)
        if match and not _alive(int(match.group(1))):
            kind = "netns" if name in names else "link"
            if kind == "netns":
                for pid in subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                                          check=False).stdout.split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", kind, "del", name], capture_output=True, check=False)
            gone.append(name)
    return gone


def require() -> None:
    """Refuse (:class:`TestbedError`, saying what to install or do) where a testbed cannot be made."""
    if sys.platform != "linux":
        raise TestbedError("a testbed needs Linux (network, PID and mount namespaces)")
    if os.geteuid() != 0:
        raise TestbedError("a testbed needs root (ip netns, veth pairs, a bridge, mounts): run it as root")
    missing = [tool for tool in ("ip", "unshare", "ssh", "ssh-keygen", "rsync") if shutil.which(tool) is None]
    if not Path("/usr/sbin/sshd").exists():
        missing.append("/usr/sbin/sshd")
    if missing:
        raise TestbedError(f"a testbed needs {', '.join(missing)}: apt-get install iproute2 util-linux "
                           "openssh-server openssh-client rsync")


def _free_subnet(tag: int) -> str:
    """A /24 of 10.213.0.0/16 that no interface of this machine has an address in: the one the tag picks, or the
    next free one (two testbeds at once, whatever their tags, never share a subnet)."""
    done = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=False)
    used = {int(m) for m in re.findall(r"inet 10\.213\.(\d+)\.", done.stdout)}
    for k in range(250):
        third = (tag + k) % 250 + 1
        if third not in used:
            return f"10.213.{third}"
    raise TestbedError("every /24 of 10.213.0.0/16 is in use on this machine: take down the testbeds there")


def _home(line: str, home: Path) -> str:
    fields = line.split(":")
    if len(fields) == 7 and fields[0] == "root":
        fields[5] = str(home)
        return ":".join(fields)
    return line


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise TestbedError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")


def _child_of(pid: int, timeout_s: float = 5.0) -> int:
    """The PID of the process ``unshare --fork`` (running as ``pid``, after ``ip netns exec`` exec'd it) forked."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            if children:
                return int(children[0])
        time.sleep(0.01)
    raise TestbedError(f"the testbed host process {pid} forked no first process in {timeout_s:.0f} s")


def _accepts(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((ip, port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"

