"""A testbed of hosts on one Linux machine: a real multi-node Ray cluster without a second machine.

Each host is a network namespace (its own IP on a bridge the testbed makes), a PID namespace (so ``ray stop`` on
one host stops only that host's Ray, and killing the host's first process kills every process it ran, as losing
the machine would), a UTS namespace (its own host name, which its own ``/etc/hosts`` resolves to its address, as
Ray expects of a host without a route to the internet) and a mount namespace (its own ``/etc/passwd``, whose root
home is the host's own directory: ``~/.ray``, the bootstrap files ``ray up`` copies; its own ``/tmp/ray``).
Everything else on the filesystem is shared, so the installed environment is the same on every host, as on a
cluster whose nodes share a filesystem. Each host runs ``sshd``, so ``ray up`` with Ray's on-premise provider
reaches it as it would a real machine.

Root only (namespaces, veth pairs, a bridge) and Debian's ``openssh-server`` and ``rsync``. :class:`Testbed`
brings the hosts up and always takes them down; :mod:`.cluster` runs ``ray up`` over them; :mod:`.session` is the
paper session the cluster tests and ``tape bench cluster`` (:mod:`.bench`) drive from the head.
"""

from .hosts import Host, Testbed, TestbedError

__all__ = ["Host", "Testbed", "TestbedError"]
