"""Where an endpoint binds: loopback stays on this machine; anything else needs authentication (CURVE)."""
from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 and 'localhost' are loopback; '*', 0.0.0.0, host and interface names are not provably so."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_endpoint(endpoint: str) -> bool:
    """ipc:// and inproc:// are local; tcp://HOST:PORT only when HOST is loopback; other schemes are not."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    return is_loopback_host(endpoint[len("tcp://"):].rsplit(":", 1)[0])
