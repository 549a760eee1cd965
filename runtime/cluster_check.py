"""``tape cluster check``: before ``ray up``, every node of an on-premise cluster file checked over SSH, each failure
naming the node and what to fix there, nothing waited on longer than a few seconds.

The checks, in order, on every node at once: port 22 answers (``ssh``), the file's key is accepted for its user
(``key``), ``tape --version`` in the user's login shell, run as ``ray up`` runs its commands, prints what it prints
here (``tape``), each ``--path`` is readable there (``path DIR``), and with ``--gpus N`` the GPUs ``nvidia-smi -L``
lists on each node, which together must be at least N (one more line, for the cluster). A node that does not answer
or refuses the key has its other checks skipped.

The checks reach the nodes only through a :class:`Runner`, so that a test gives them nodes of its own making;
:class:`SshRunner` is the real one.
"""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, Protocol

import msgspec
import yaml

__all__ = ["ClusterFile", "ClusterFileError", "Done", "Report", "Result", "Runner", "SshRunner", "check",
           "read_cluster_file", "report_lines"]

SSH_PORT = 22
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0

Status = Literal["ok", "failed", "skipped"]


class ClusterFileError(ValueError):
    """The cluster file cannot be checked: not YAML, not an on-premise (``provider.type: local``) cluster file, or a
    field missing or malformed; the message names the file and the field."""


class ClusterFile(msgspec.Struct, frozen=True):
    """What the checks read of a cluster file: Ray's on-premise provider's nodes, and how ``ray up`` logs in."""

    path: str
    head_ip: str
    worker_ips: tuple[str, ...]
    ssh_user: str
    ssh_private_key: str | None
    """expanded as Ray expands it (``~``); None when the file names none (ssh's own keys and agent then)"""

    @property
    def nodes(self) -> tuple[str, ...]:
        return (self.head_ip, *self.worker_ips)


class Result(msgspec.Struct, frozen=True):
    """One check of one node (``node`` is ``cluster`` for the GPU total): ok, failed or skipped, and what was found,
    or, when it failed, what is wrong and what to do there."""

    node: str
    check: str
    status: Status
    detail: str


class Report(msgspec.Struct, frozen=True):
    cluster: str
    """the cluster file checked"""
    local_version: str
    """``tape --version`` on this machine, what every node must print"""
    results: tuple[Result, ...]

    @property
    def ok(self) -> bool:
        return all(r.status != "failed" for r in self.results)

    @property
    def failed(self) -> tuple[Result, ...]:
        return tuple(r for r in self.results if r.status == "failed")


class Done(msgspec.Struct, frozen=True):
    """What a command on a node did: its exit status (255: ssh itself failed; None: it timed out), its output."""

    status: int | None
    out: str
    err: str


class Runner(Protocol):
    """How the checks reach a node."""

    def reach(self, ip: str) -> str | None:
        """None when ``ip`` accepts a TCP connection on port 22, else why not (``timed out after 5 s``)."""
        ...

    def run(self, ip: str, command: str) -> Done:
        """``command`` in the cluster's SSH user's login shell on ``ip``, as ``ray up`` runs its commands."""
        ...


# --- the cluster file ---------------------------------------------------------------------------------------------
def read_cluster_file(path: str | Path) -> ClusterFile:
    """The nodes and login of an on-premise cluster file; a :class:`ClusterFileError` naming the field otherwise."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ClusterFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ClusterFileError(f"{path}: a directory, not a cluster file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClusterFileError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ClusterFileError(f"{path}: not YAML{where}: {problem}") from None
    if not isinstance(config, dict):
        raise ClusterFileError(f"{path}: not a cluster file (a YAML mapping with provider: and auth:)")
    provider = _section(path, config, "provider")
    kind = provider.get("type")
    if kind != "local":
        raise ClusterFileError(f"{path}: provider.type is {kind!r}, not 'local': tape cluster check checks an "
                               "on-premise cluster file (Ray's local provider, as config/cluster-onprem.yaml)")
    if "head_ip" not in provider:
        also = " (a coordinator_address cluster is not supported: list the nodes)" if "coordinator_address" in \
            provider else ""
        raise ClusterFileError(f"{path}: provider.head_ip is missing: name the head node's address{also}")
    head = _address(path, "provider.head_ip", provider["head_ip"])
    workers_field = provider.get("worker_ips") or []
    if not isinstance(workers_field, list):
        raise ClusterFileError(f"{path}: provider.worker_ips must be a list of addresses, not {workers_field!r}")
    workers = tuple(_address(path, f"provider.worker_ips[{i}]", ip) for i, ip in enumerate(workers_field))
    seen: set[str] = set()
    for ip in (head, *workers):
        if ip in seen:
            raise ClusterFileError(f"{path}: {ip} is listed twice in provider.head_ip and provider.worker_ips")
        seen.add(ip)
    auth = _section(path, config, "auth")
    user = auth.get("ssh_user")
    if not isinstance(user, str) or not user.strip():
        raise ClusterFileError(f"{path}: auth.ssh_user is missing: name the user ray up logs in as")
    key = auth.get("ssh_private_key")
    if key is not None and (not isinstance(key, str) or not key.strip()):
        raise ClusterFileError(f"{path}: auth.ssh_private_key must be a path, not {key!r}")
    if key is not None:
        key = str(Path(key).expanduser())
        if not Path(key).is_file():
            raise ClusterFileError(f"{path}: auth.ssh_private_key {key}: no such file on this machine (the key "
                                   "ray up logs in with, read here)")
    return ClusterFile(str(path), head, workers, user.strip(), key)


def _section(path: Path, config: dict, name: str) -> dict:
    section = config.get(name)
    if not isinstance(section, dict):
        raise ClusterFileError(f"{path}: {name} is missing or not a mapping: not a Ray cluster file")
    return section


def _address(path: Path, field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value.strip()):
        raise ClusterFileError(f"{path}: {field} must be a node's address (an IP or a host name), not {value!r}")
    return value.strip()


# --- the checks ---------------------------------------------------------------------------------------------------
def check(cluster: ClusterFile, runner: Runner, local_version: str, *, paths: Sequence[str] = (),
          gpus: int | None = None, parallel: int = 32) -> Report:
    """Every check on every node of ``cluster`` (at most ``parallel`` nodes at once), through ``runner``."""
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(cluster.nodes)))) as pool:
        per_node = list(pool.map(lambda ip: _node(ip, cluster, runner, local_version, paths, gpus is not None),
                                 cluster.nodes))
    results = [r for node, _ in per_node for r in node]
    if gpus is not None:
        results.append(_gpu_total(cluster.nodes, [n for _, n in per_node], gpus))
    return Report(cluster.path, local_version, tuple(results))


def _node(ip: str, cluster: ClusterFile, runner: Runner, local_version: str, paths: Sequence[str],
          count_gpus: bool) -> tuple[list[Result], int | None]:
    """The node's results, and the GPUs it offers (None when not counted)."""
    results = [_ssh(ip, runner)]
    if results[0].status == "ok":
        results.append(_key(ip, cluster, runner))
    names = ["key", "tape", *(f"path {p}" for p in paths), *(["gpus"] if count_gpus else [])]
    if results[-1].status != "ok":
        blocker = results[-1]
        why = "unreachable" if blocker.check == "ssh" else \
            "the key was refused" if " was refused " in blocker.detail else "SSH login failed"
        return results + [Result(ip, name, "skipped", f"not checked: {why}") for name in names[len(results) - 1:]], None
    results.append(_tape(ip, runner, local_version))
    results += [_path(ip, runner, p) for p in paths]
    if not count_gpus:
        return results, None
    gpus, said = _gpus(ip, runner)
    results.append(Result(ip, "gpus", "ok", f"{gpus} GPU{'' if gpus == 1 else 's'}{said}"))
    return results, gpus


def _ssh(ip: str, runner: Runner) -> Result:
    why = runner.reach(ip)
    if why is None:
        return Result(ip, "ssh", "ok", f"port {SSH_PORT} answers")
    return Result(ip, "ssh", "failed", f"node {ip}: unreachable on port {SSH_PORT} ({why}): check the address and "
                  "that sshd runs there")


def _key(ip: str, cluster: ClusterFile, runner: Runner) -> Result:
    done = runner.run(ip, "true")
    user = cluster.ssh_user
    if done.status is None:
        return Result(ip, "key", "failed", f"node {ip}: SSH as {user} did not finish ({done.err}): check that the "
                      "node is not overloaded and that sshd answers there")
    if done.status != 255:
        return Result(ip, "key", "ok", f"accepted for {user}")
    said = _said(done.err)
    if "permission denied" in said.lower():
        key = cluster.ssh_private_key or "(ssh's own keys: the file names no auth.ssh_private_key)"
        public = f"{cluster.ssh_private_key}.pub" if cluster.ssh_private_key else "its public key"
        return Result(ip, "key", "failed", f"node {ip}: the SSH key {key} was refused for user {user}: add its public "
                      f"key ({public}) to ~{user}/.ssh/authorized_keys there")
    return Result(ip, "key", "failed", f"node {ip}: SSH as {user} failed ({said or 'ssh exited 255'}): check that "
                  "sshd runs there and accepts that user")


_VERSION = re.compile(r"tape (?P<tape>\S+) \(Python (?P<python>[^,]+), Ray (?P<ray>[^)]+)\)")


def _tape(ip: str, runner: Runner, local_version: str) -> Result:
    done = runner.run(ip, "tape --version")
    here = f"this machine runs {local_version}"
    install = "install tape there from the same commit, with the same Python and Ray (pip install -c " \
              "constraints.txt -e . in the same checkout), on the PATH of the login shell"
    if done.status is None:
        return Result(ip, "tape", "failed", f"node {ip}: tape --version did not finish ({done.err}): check that "
                      "the node is not overloaded and that its login shell starts")
    said = _said(done.err)
    if done.status == 127 or "command not found" in said:
        return Result(ip, "tape", "failed", f"node {ip}: tape is not on the login shell's PATH ({said or 'exit 127'}); "
                      f"{here}: {install}")
    lines = [line.strip() for line in done.out.splitlines() if line.strip()]
    if done.status != 0 or not lines:
        return Result(ip, "tape", "failed", f"node {ip}: tape --version failed (exit {done.status}: "
                      f"{said or 'no output'}); {here}: {install}")
    there = lines[-1]
    if there == local_version:
        return Result(ip, "tape", "ok", there)
    return Result(ip, "tape", "failed", f"node {ip} runs {there}, {here}: {_what_differs(there, local_version)}")


def _what_differs(there: str, here: str) -> str:
    a, b = _VERSION.fullmatch(there), _VERSION.fullmatch(here)
    if a is None or b is None:
        return "install the same tape there (the same commit, Python and Ray)"
    differ = [what for what, key in (("commit", "tape"), ("Python", "python"), ("Ray", "ray")) if a[key] != b[key]]
    fixes = {"commit": "check out the same commit there (or share this checkout) and pip install -c constraints.txt -e .",
             "Python": "use the same Python version there (Ray needs one version across a cluster)",
             "Ray": "install the same Ray there (pip install -c constraints.txt -e . pins it)"}
    return "; ".join(fixes[what] for what in differ)


def _path(ip: str, runner: Runner, path: str) -> Result:
    p = shlex.quote(path)
    done = runner.run(ip, f"if [ ! -e {p} ]; then echo missing; elif [ -r {p} ] && {{ [ ! -d {p} ] || [ -x {p} ]; }}; "
                          "then echo readable; else echo unreadable; fi")
    found = done.out.split()[-1] if done.status == 0 and done.out.split() else None
    if found == "readable":
        return Result(ip, f"path {path}", "ok", "readable")
    why = {"missing": "it does not exist there", "unreadable": "it is not readable there"}.get(
        found or "", f"the check failed: {_said(done.err) or f'exit {done.status}'}")
    return Result(ip, f"path {path}", "failed", f"node {ip} cannot read {path} ({why}): mount the shared filesystem "
                  "there at the same path")


_GPU = re.compile(r"^GPU \d+:", re.M)
_NO_NVIDIA_SMI = "no-nvidia-smi"


def _gpus(ip: str, runner: Runner) -> tuple[int, str]:
    """The GPUs ``nvidia-smi -L`` lists on the node, and why none when it lists none for a reason."""
    done = runner.run(ip, f"command -v nvidia-smi >/dev/null || {{ echo {_NO_NVIDIA_SMI}; exit 0; }}; nvidia-smi -L")
    if done.status == 0 and _NO_NVIDIA_SMI in done.out:
        return 0, " (no nvidia-smi)"
    if done.status != 0:
        return 0, f" (nvidia-smi -L failed: {_said(done.err) or _said(done.out) or f'exit {done.status}'})"
    return len(_GPU.findall(done.out)), ""


def _gpu_total(nodes: Sequence[str], counts: Sequence[int | None], wanted: int) -> Result:
    total = sum(n for n in counts if n is not None)
    each = ", ".join(f"{ip} {'not checked' if n is None else n}" for ip, n in zip(nodes, counts, strict=True))
    if total >= wanted:
        return Result("cluster", "gpus", "ok", f"{total} GPUs, {wanted} needed ({each})")
    return Result("cluster", "gpus", "failed", f"the nodes offer {total} GPUs, {wanted} needed ({each}): add GPU nodes "
                  "to provider.worker_ips, or install the NVIDIA driver (nvidia-smi) where a GPU is not seen")


_SHELL_NOISE = ("cannot set terminal process group", "no job control in this shell")


def _said(err: str) -> str:
    """The last line a command said on stderr, less an interactive shell's notices about having no terminal."""
    lines = [line.strip() for line in err.splitlines() if line.strip() and not any(n in line for n in _SHELL_NOISE)]
    return lines[-1] if lines else ""


# --- the report ---------------------------------------------------------------------------------------------------
def report_lines(report: Report, cluster: ClusterFile) -> list[str]:
    """The report for people: one line per node per check, then the verdict."""
    label = {ip: f"{ip} (head)" if ip == cluster.head_ip else ip for ip in cluster.nodes}
    label["cluster"] = "cluster"
    node_w = max(len(v) for v in label.values())
    check_w = max(len(r.check) for r in report.results)
    out = [f"{label[r.node]:<{node_w}}  {r.check:<{check_w}}  {r.status:<7}  {r.detail}" for r in report.results]
    failed = report.failed
    if failed:
        out.append(f"{len(failed)} of {len(report.results)} checks failed: fix them before ray up")
    else:
        out.append(f"all {len(report.results)} checks passed on {len(cluster.nodes)} nodes: ready for ray up")
    return out


# --- the real runner ----------------------------------------------------------------------------------------------
class SshRunner:
    """The nodes over SSH as ``ray up`` reaches them: the cluster's user and key, ``BatchMode`` (never a prompt),
    host keys neither checked nor stored, a ``ConnectTimeout`` of a few seconds, and each command in
    ``bash --login -c -i`` after ``source ~/.bashrc``, Ray's own login shell; ``command_timeout_s`` bounds each."""

    def __init__(self, user: str, key: str | None, *, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 command_timeout_s: float = COMMAND_TIMEOUT_S, env: Mapping[str, str] | None = None) -> None:
        self.user = user
        self.key = key
        self.connect_timeout_s = connect_timeout_s
        self.command_timeout_s = command_timeout_s
        self.env = None if env is None else dict(env)

    def reach(self, ip: str) -> str | None:
        try:
            with socket.create_connection((ip, SSH_PORT), timeout=self.connect_timeout_s):
                return None
        except TimeoutError:
            return f"no answer in {self.connect_timeout_s:g} s"
        except OSError as exc:
            return exc.strerror or str(exc)

    def argv(self, ip: str, command: str) -> list[str]:
        shell = f"source ~/.bashrc; export OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore && ({command})"
        return ["ssh", *self.options(), f"{self.user}@{ip}", "bash --login -c -i " + shlex.quote(shell)]

    def options(self) -> list[str]:
        key = ["-i", self.key, "-o", "IdentitiesOnly=yes"] if self.key else []
        return [*key, "-n", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", f"ConnectTimeout={max(1, round(self.connect_timeout_s))}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2"]

    def run(self, ip: str, command: str) -> Done:
        try:
            done = subprocess.run(self.argv(ip, command), capture_output=True, text=True, errors="replace",
                                  timeout=self.command_timeout_s, env=self.env, stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired as exc:
            return Done(None, _text(exc.stdout), f"no answer in {self.command_timeout_s:g} s")
        return Done(done.returncode, done.stdout, done.stderr)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")

