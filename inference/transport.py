"""ZMQ sockets for the inference stage: loopback by default, CURVE required for any other address."""
from __future__ import annotations

from pathlib import Path

import zmq
import zmq.auth

from thzcore.netsec import is_loopback_endpoint


class InsecureBindError(ValueError):
    """A non-loopback bind without CURVE keys."""


def is_local_endpoint(endpoint: str) -> bool:
    """ipc:// and inproc:// are local; tcp:// only on a loopback address (127.0.0.0/8, ::1, localhost)."""
    if not endpoint.startswith(("ipc://", "inproc://", "tcp://")):
        raise ValueError(f"endpoint {endpoint!r}: use tcp://HOST:PORT, ipc://PATH or inproc://NAME")
    return is_loopback_endpoint(endpoint)


def check_bind(endpoint: str, curve_secret_key_file: str = "", curve_clients_dir: str = "") -> None:
    """Raise InsecureBindError for an endpoint secure_bind would refuse, before anything is started."""
    try:
        local = is_local_endpoint(endpoint)
    except ValueError as exc:
        raise InsecureBindError(str(exc)) from None
    if not local and (not curve_secret_key_file or not curve_clients_dir):
        raise InsecureBindError(
            f"refusing to bind {endpoint!r} without authentication: results are biometric data. Bind "
            "127.0.0.1 (the default), or create CURVE keys (python -m zmq.auth or zmq.auth.create_certificates) "
            "and set inference.curve_secret_key_file (and inference.curve_clients_dir for the allowed clients)")


def secure_bind(sock: zmq.Socket, endpoint: str, curve_secret_key_file: str = "",
                curve_clients_dir: str = ""):
    """Bind `sock`; a non-loopback endpoint needs a CURVE server key and a directory of allowed clients.

    Returns (bound endpoint, authenticator or None): LAST_ENDPOINT, so `tcp://127.0.0.1:*` resolves
    to the real port; stop the authenticator when the socket is closed.
    """
    auth = None
    if not is_local_endpoint(endpoint):
        check_bind(endpoint, curve_secret_key_file, curve_clients_dir)
        public, secret = zmq.auth.load_certificate(str(Path(curve_secret_key_file).expanduser()))
        if secret is None:
            raise InsecureBindError(f"{curve_secret_key_file} holds no secret key")
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True
        auth = start_authenticator(sock.context, curve_clients_dir)
    sock.bind(endpoint)
    return sock.getsockopt_string(zmq.LAST_ENDPOINT), auth


def start_authenticator(ctx: zmq.Context, curve_clients_dir: str):
    """Allow only the client public keys in `curve_clients_dir` (needed with CURVE on a public bind)."""
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(Path(curve_clients_dir).expanduser()))
    return auth
