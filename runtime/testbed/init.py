"""The first process (PID 1) of a testbed host: gives the host its name, its own ``/etc/hosts``, its own
``/etc/passwd`` (root's home is the host's own directory) and ``/tmp/ray``, runs ``sshd``, reaps every orphan (a
daemonised ``ray start`` leaves many), and on SIGTERM, or when sshd dies, kills every process of the host.

Run as ``unshare --mount --uts --pid --fork --mount-proc python -I init.py DIR`` inside the host's network
namespace (:mod:`runtime.testbed.hosts` writes ``DIR``: ``hostname``, ``hosts``, ``passwd``, ``sshd_config`` and
``ray/``). A standalone script: it imports nothing of the project.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys


def main(where: str) -> int:
    with open(os.path.join(where, "hostname")) as f:
        socket.sethostname(f.read().strip())
    for source, target in (("hosts", "/etc/hosts"), ("passwd", "/etc/passwd"), ("ray", "/tmp/ray")):
        if not os.path.exists(target):
            os.makedirs(target)
        subprocess.run(["mount", "--bind", os.path.join(where, source), target], check=True)
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", os.path.join(where, "sshd_config")])

    def stop(*_: object) -> None:
        os.kill(-1, signal.SIGKILL)  # from PID 1: every other process of this PID namespace
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        if pid == sshd.pid:  # the host's door closed: the host is gone
            print(f"sshd exited with status {status}", file=sys.stderr, flush=True)
            stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
