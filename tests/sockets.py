"""Whether another process's TCP socket has Nagle's algorithm off (TCP_NODELAY), read from the
socket itself: the process's descriptor is duplicated with pidfd_getfd (Linux 5.6+, needs the
right to ptrace the process: the tests run as root or as its owner) and asked with getsockopt."""
from __future__ import annotations

import ctypes
import os
import socket

import psutil

SYS_PIDFD_GETFD = 438          # x86_64 and aarch64 alike (the unified syscall table)
_libc = ctypes.CDLL(None, use_errno=True)


def owner(local_port: int, peer_port: int) -> tuple[int, int]:
    """(pid, descriptor) of the loopback TCP connection from local_port to peer_port."""
    for c in psutil.net_connections(kind="tcp"):
        if c.laddr and c.raddr and c.laddr.port == local_port and c.raddr.port == peer_port and c.pid:
            return c.pid, c.fd
    raise LookupError(f"no process holds a connection {local_port} -> {peer_port}")


def nodelay(local_port: int, peer_port: int) -> bool:
    """TCP_NODELAY of the socket (in whichever process) connected from local_port to peer_port."""
    pid, fd = owner(local_port, peer_port)
    pidfd = os.pidfd_open(pid)
    try:
        copy = _libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if copy < 0:
            raise OSError(ctypes.get_errno(), f"pidfd_getfd of descriptor {fd} of process {pid}")
        with socket.socket(fileno=copy) as sock:
            return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        os.close(pidfd)
