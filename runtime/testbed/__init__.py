"""A testbed of hosts on one Linux machine: a real multi-node Ray cluster without a second machine.

Each host is a network namespace (its own IP on a bridge the testbed makes), a PID namespace (so ``ray stop`` on
one host stops only that host's Ray, and killing the host's first process kills every process it ran, as losing
the machine would) and a mount namespace that gives root its own home there (``~/.ray``, the bootstrap files ``ray up``
copies) and the host its own ``/tmp/ray``; everything else on the filesystem is shared, so the installed
environment is the same on every host, as on a cluster whose nodes share a filesystem. Each host runs ``sshd``,
so ``ray up`` with Ray's on-premise provider reaches it as it would a real machine.

Root only (namespaces, veth pairs, a bridge) and Debian's ``openssh-server``. :class:`Testbed` brings the hosts up
and always takes them down; ``tape bench cluster`` and the cluster tests use it.
"""

from .hosts import Host, Testbed, TestbedError

__all__ = ["Host", "Testbed", "TestbedError"]
