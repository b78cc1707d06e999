"""Pure: who may send to Courier. Calling AETs and their hosts come from DicomModalities."""
from __future__ import annotations

import socket
from functools import lru_cache
from typing import Mapping, Optional


@lru_cache(maxsize=256)
def _addresses(host: str) -> frozenset[str]:
    try:
        return frozenset(info[4][0] for info in socket.getaddrinfo(host, None))
    except OSError:
        return frozenset({host})


class CallerPolicy:
    """mode "Any": everyone may send. "KnownModalities": the calling AET must be declared in
    DicomModalities, and the association must come from that modality's Host."""

    def __init__(self, mode: str, known: Mapping[str, tuple[str, ...]]) -> None:
        self.mode, self.known = mode, dict(known)

    def update(self, known: Mapping[str, tuple[str, ...]]) -> None:
        """The modalities changed at runtime: one assignment, seen whole by the C-STORE filter."""
        self.known = dict(known)

    def refuse_aet(self, aet: str) -> Optional[str]:
        if self.mode == "Any" or aet in self.known:
            return None
        return f"calling AE {aet!r} is not declared in DicomModalities"

    def refuse_ip(self, aet: str, ip: str) -> Optional[str]:
        if self.mode == "Any" or not ip:
            return None
        hosts = self.known.get(aet, ())
        if any(ip == host or ip in _addresses(host) for host in hosts):
            return None
        return f"calling AE {aet!r} connected from {ip}, not from its declared host"
