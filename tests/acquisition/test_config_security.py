"""The acquisition config section's checks and the loopback / CURVE policy of the publishers (real ZMQ)."""
from __future__ import annotations

import pytest
import zmq
import zmq.auth

from acquisition.config import AcquisitionConfig
from acquisition.errors import ConfigurationError
from acquisition.publish import StatusPublisher, check_bind
from pipeline.settings import settings_from_dict
from thzcore.config import ConfigError
from thzcore.netsec import is_loopback_endpoint as is_loopback
from thzcore.netsec import stop_authenticator
from thzcore.wire import decode


@pytest.mark.parametrize("data, needle", [
    ({"reconnect_initial_s": 2.0, "reconnect_max_s": 1.0}, "reconnect_max_s"),
    ({"curve_secret_key_file": "k"}, "go together"),
    ({"raw_endpoint": "tcp://127.0.0.1:7000", "status_endpoint": "tcp://127.0.0.1:7000"}, "own endpoint"),
    ({"visa_library": "ni"}, "visa_library"),
    ({"timeout_s": 0}, "timeout_s"),
    ({"block_reader": "fast"}, "block_reader"),
    ({"galvo_baud": 9600}, "unknown key"),
])
def test_bad_acquisition_config_names_the_field(data, needle):
    with pytest.raises(ConfigError, match=needle):
        settings_from_dict({"acquisition": data})


def test_defaults_are_valid():
    a = AcquisitionConfig()
    assert a.receiver_resource == "TCPIP::127.0.0.1::5025::SOCKET" and a.visa_library == "@py"


@pytest.mark.parametrize("ep, local", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.3.4.5:1", True), ("tcp://[::1]:5", True),
    ("tcp://localhost:5", True), ("ipc:///tmp/x", True), ("inproc://x", True),
    ("tcp://*:5555", False), ("tcp://0.0.0.0:5555", False), ("tcp://192.168.1.10:5", False),
    ("tcp://eth0:5", False), ("udp://127.0.0.1:5", False),
])
def test_loopback_detection(ep, local):
    assert is_loopback(ep) is local


def test_public_bind_refused_without_curve_and_says_how(tmp_path):
    with pytest.raises(ConfigurationError, match="create_certificates") as ei:
        check_bind("tcp://*:5555", "", "", "raw_endpoint")
    assert "acquisition.curve_secret_key_file" in str(ei.value)
    with pytest.raises(ConfigurationError, match="does not exist"):
        check_bind("tcp://*:5555", str(tmp_path / "none.key_secret"), str(tmp_path), "raw_endpoint")
    check_bind("tcp://127.0.0.1:5555", "", "", "raw_endpoint")


@pytest.mark.integration
def test_curve_publisher_serves_only_authorised_clients(tmp_path):
    """A CURVE status publisher: an authorised client decodes heartbeats, an unknown client gets nothing."""
    keys, clients = tmp_path / "keys", tmp_path / "clients"
    keys.mkdir()
    clients.mkdir()
    server_pub, server_sec = zmq.auth.create_certificates(str(keys), "server")
    client_pub, client_sec = zmq.auth.create_certificates(str(clients), "client")
    stranger_pub, stranger_sec = zmq.auth.create_certificates(str(keys), "stranger")  # not in clients/
    check_bind("tcp://*:5555", server_sec, str(clients), "raw_endpoint")  # configured: allowed
    ctx = zmq.Context()
    pub = StatusPublisher(ctx, "tcp://127.0.0.1:*", "sc1", 0.05, server_sec, str(clients))
    server_public, _ = zmq.auth.load_certificate(server_pub)

    def subscriber(cert):
        pk, sk = zmq.auth.load_certificate(cert)
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.curve_publickey, s.curve_secretkey, s.curve_serverkey = pk, sk, server_public
        s.setsockopt(zmq.SUBSCRIBE, b"status")
        s.connect(pub.endpoint)
        return s

    good, bad = subscriber(client_sec), subscriber(stranger_sec)
    try:
        assert good.poll(5000), "the authorised client received nothing"
        msg = decode(good.recv_multipart(), "status")
        assert msg.meta["heartbeat"] is True and msg.scanner_id == "sc1"
        assert not bad.poll(500)
    finally:
        good.close()
        bad.close()
        pub.close()
        stop_authenticator(ctx)
        ctx.term()
