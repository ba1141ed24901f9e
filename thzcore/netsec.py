"""Where an endpoint binds: loopback stays on this machine; anything else needs authentication (CURVE).

The one secure bind of every stage: `check_bind` refuses a non-loopback endpoint without CURVE keys
(saying how to make them), `secure_bind` binds a socket as a CURVE server when keys are in force and
leases the context's one ZAP authenticator, which allows only the clients' public keys in a directory.
"""
from __future__ import annotations

import ipaddress
import threading
from pathlib import Path

import zmq

LOCAL_ANY = "tcp://127.0.0.1:*"  # loopback, an ephemeral port: what the stages of one process bind

_CREATE_KEYS = ("`python -c \"import zmq.auth; zmq.auth.create_certificates('keys', 'server')\"` "
                "(and one per client)")


class InsecureBindError(ValueError):
    """A bind refused: not loopback and no (usable) CURVE keys. The message names the field and the fix."""


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


def _section(field: str) -> str:
    return field.rpartition(".")[0] or "<section>"


def check_bind(endpoint: str, curve_secret_key_file: str = "", curve_clients_dir: str = "",
               field: str = "endpoint") -> None:
    """Refuse a non-loopback `endpoint` unless CURVE keys are configured and present.

    `field` is the config field holding the endpoint (e.g. 'acquisition.raw_endpoint'); its section
    names the key fields in the message.
    """
    if not endpoint.startswith(("ipc://", "inproc://", "tcp://")):
        raise InsecureBindError(f"{field}={endpoint!r}: use tcp://HOST:PORT, ipc://PATH or inproc://NAME")
    if is_loopback_endpoint(endpoint):
        return
    section = _section(field)
    if not curve_secret_key_file or not curve_clients_dir:
        raise InsecureBindError(
            f"{field}={endpoint!r} is not a loopback address and CURVE is not configured: refusing to bind it "
            "unauthenticated (scans, face images and results are biometric data). Bind tcp://127.0.0.1:PORT (the "
            f"default), or create certificates with {_CREATE_KEYS}, then set {section}.curve_secret_key_file = "
            f"'keys/server.key_secret' and {section}.curve_clients_dir to a directory holding the clients' *.key files")
    if not Path(curve_secret_key_file).expanduser().is_file():
        raise InsecureBindError(f"{section}.curve_secret_key_file={curve_secret_key_file!r} does not exist")
    if not Path(curve_clients_dir).expanduser().is_dir():
        raise InsecureBindError(f"{section}.curve_clients_dir={curve_clients_dir!r} is not a directory")


class CurveLease:
    """A hold on the ZAP authenticator of one context; `stop()` releases it (the last holder stops it)."""

    def __init__(self, ctx: zmq.Context) -> None:
        self._ctx: zmq.Context | None = ctx

    def stop(self) -> None:
        if self._ctx is not None:
            _release(self._ctx)
            self._ctx = None


# one ThreadAuthenticator per context (ZAP allows one handler per context), with its number of holders
_AUTH_LOCK = threading.Lock()
_AUTHS: dict[int, list] = {}


def _lease(ctx: zmq.Context, curve_clients_dir: str) -> CurveLease:
    from zmq.auth.thread import ThreadAuthenticator

    with _AUTH_LOCK:
        entry = _AUTHS.get(id(ctx))
        if entry is None:
            auth = ThreadAuthenticator(ctx)
            auth.start()
            auth.configure_curve(domain="*", location=str(Path(curve_clients_dir).expanduser()))
            entry = _AUTHS[id(ctx)] = [auth, 0]
        entry[1] += 1
    return CurveLease(ctx)


def _release(ctx: zmq.Context) -> None:
    with _AUTH_LOCK:
        entry = _AUTHS.get(id(ctx))
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _AUTHS[id(ctx)]
    entry[0].stop()


def stop_authenticator(ctx: zmq.Context) -> None:
    """Stop the authenticator of `ctx` whatever its holders (its socket would keep ctx.term() waiting)."""
    with _AUTH_LOCK:
        entry = _AUTHS.pop(id(ctx), None)
    if entry is not None:
        entry[0].stop()


def secure_bind(sock: zmq.Socket, endpoint: str, curve_secret_key_file: str = "", curve_clients_dir: str = "",
                field: str = "endpoint", curve_on_loopback: bool = False) -> tuple[str, CurveLease | None]:
    """Bind `sock` after check_bind; returns (bound endpoint, CURVE lease or None).

    The bound endpoint is LAST_ENDPOINT, so `tcp://127.0.0.1:*` resolves to the real port. A
    non-loopback endpoint is served with CURVE; a loopback one too when `curve_on_loopback` and keys
    are configured. Stop the lease when the socket is closed. A failing bind raises zmq.ZMQError.
    """
    check_bind(endpoint, curve_secret_key_file, curve_clients_dir, field)
    lease = None
    if curve_secret_key_file and curve_clients_dir and (curve_on_loopback or not is_loopback_endpoint(endpoint)):
        from zmq.auth import load_certificate

        public, secret = load_certificate(str(Path(curve_secret_key_file).expanduser()))
        if secret is None:
            raise InsecureBindError(f"{_section(field)}.curve_secret_key_file={curve_secret_key_file!r} "
                                    "holds no secret key")
        lease = _lease(sock.context, curve_clients_dir)
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True
    try:
        sock.bind(endpoint)
    except zmq.ZMQError:
        if lease is not None:
            lease.stop()
        raise
    return sock.getsockopt_string(zmq.LAST_ENDPOINT), lease
