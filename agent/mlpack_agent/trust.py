"""Who may send events: the agent's socket, and the sender of every datagram, checked.

Two guards, both on by default:

1. The socket lives in a folder only the agent's user can enter (folders.py) and is
   itself mode 0600: another user's process cannot even address it (EACCES).
2. Every datagram carries its sender's credentials, filled in by the kernel
   (SO_PASSCRED / SCM_CREDENTIALS on Linux, so they cannot be forged without root): a
   datagram whose sender runs as another user than the agent is refused, and counted
   (`mlpack_agent_refused_total{reason="sender"}`). That catches a process that got hold
   of a socket some other way (an inherited or passed descriptor, a folder made
   reachable by mistake).

Pids: the kernel reports the sender's pid as this agent's pid namespace sees it, and 0
for a sender in another pid namespace. The service's pid cannot be known in advance
(pre-forked workers, restarts), so the pid is not an identity; with `peers.same_pid_namespace`
the agent refuses senders it cannot see (pid 0). That fits where service and agent share a
pid namespace (systemd units, a Lambda extension and its function, `mlpack serve`), never
containers of a Kubernetes pod or of Greengrass, which have one each.

Where the platform has no SO_PASSCRED (not Linux), only the folder guards the socket; the
agent says so once at start.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from .folders import check_private, private_dir

log = logging.getLogger("mlpack_agent.trust")

_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
_ANCILLARY_BYTES = socket.CMSG_SPACE(_UCRED.size) if hasattr(socket, "CMSG_SPACE") else 0
PASSCRED = getattr(socket, "SO_PASSCRED", None)
_SCM_CREDENTIALS = getattr(socket, "SCM_CREDENTIALS", None)


@dataclass(frozen=True)
class Sender:
    pid: int  # 0: in another pid namespace
    uid: int
    gid: int


@dataclass(frozen=True)
class Received:
    data: bytes
    sender: Sender | None  # None: the platform gives no credentials
    truncated: bool  # larger than the receive buffer: never a datagram of the client


# sun_path is 108 bytes on Linux, with the terminating NUL.
MAX_SOCKET_PATH = 107


def bind(path: str) -> socket.socket:
    """Bind the agent's datagram socket at `path`, in a private folder, mode 0600, with
    sender credentials on. Raises UnsafeFolder (an OSError) for a folder others can enter."""
    target = Path(path)
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:  # the kernel's sun_path: say so before creating folders
        raise OSError(f"the socket path {path} is {len(os.fsencode(path))} bytes, over the {MAX_SOCKET_PATH} "
                      "a Unix socket path may have; choose a shorter path (MLPACK_AGENT_SOCKET or `socket` in "
                      "agent.json)")
    check_private(private_dir(target.parent))
    if target.exists() or target.is_symlink():
        if not stat.S_ISSOCK(target.lstat().st_mode):
            raise OSError(f"{path} exists and is not a socket; choose another socket path")
        target.unlink()  # left behind by an agent that died
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if PASSCRED is not None:
        # Before bind: no datagram can arrive without its sender's credentials.
        sock.setsockopt(socket.SOL_SOCKET, PASSCRED, 1)
    else:
        log.warning("this platform gives no sender credentials on Unix sockets; only the folder's permissions "
                    "guard the agent's socket")
    sock.bind(path)
    os.chmod(path, 0o600)
    return sock


def receive(sock: socket.socket, size: int) -> Received:
    """One datagram and, where the platform gives them, its sender's credentials."""
    if PASSCRED is None:
        return Received(sock.recv(size), None, False)
    data, ancillary, flags, _ = sock.recvmsg(size, _ANCILLARY_BYTES)
    sender = None
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == _SCM_CREDENTIALS and len(payload) >= _UCRED.size:
            sender = Sender(*_UCRED.unpack_from(payload))
    return Received(data, sender, bool(flags & socket.MSG_TRUNC))


class SenderPolicy:
    """Accept datagrams only from processes of the agent's own user (and, with
    `same_pid_namespace`, only from processes the agent can see)."""

    def __init__(self, uid: int | None = None, same_pid_namespace: bool = False) -> None:
        self.uid = os.geteuid() if uid is None else uid
        self.same_pid_namespace = same_pid_namespace
        self._logged: set[int] = set()

    def refuses(self, received: Received) -> bool:
        sender = received.sender
        if sender is None:
            return PASSCRED is not None  # credentials were asked for: their absence is suspect
        if sender.uid == self.uid and (sender.pid != 0 or not self.same_pid_namespace):
            return False
        if len(self._logged) < 10 and sender.uid not in self._logged:  # bounded: one line per user
            self._logged.add(sender.uid)
            log.warning("refused datagrams from pid %d uid %d: the agent accepts only its own user (uid %d)%s",
                        sender.pid, sender.uid, self.uid,
                        " in its own pid namespace" if self.same_pid_namespace else "",
                        extra={"sender.uid": sender.uid, "sender.pid": sender.pid})
        return True
