"""The `acquisition` config section: device addresses, timeouts, endpoints, recording."""
from __future__ import annotations

from pydantic import Field

from thzcore.config import Section


class AcquisitionConfig(Section):
    galvo_port: str = Field("/dev/ttyUSB0", description="serial port of the galvo controller")
    galvo_baudrate: int = Field(115200, gt=0, description="galvo controller baud rate")
    receiver_resource: str = Field("TCPIP::127.0.0.1::5025::SOCKET", description="VISA resource of the FMCW receiver")
    timeout_s: float = Field(5.0, gt=0, description="I/O timeout for one query (s)")
    raw_endpoint: str = Field("tcp://127.0.0.1:5555", description="ZMQ PUB endpoint of the `raw` topic")
    status_endpoint: str = Field("tcp://127.0.0.1:5556", description="ZMQ PUB endpoint of the `status` topic")
    record_dir: str = Field("recordings", description="directory of HDF5 session recordings")
