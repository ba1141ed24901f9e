"""The `acquisition` config section: device addresses, timeouts, reconnect policy, endpoints, recording."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import Field, field_validator, model_validator

from thzcore import datadirs
from thzcore.config import Section
from thzcore.scanner import ScannerConfig


class AcquisitionConfig(Section):
    # --- galvo controller (serial, see docs/protocols.md) ---
    galvo_port: str = Field("/dev/ttyUSB0", min_length=1, description="serial port of the galvo controller")
    galvo_baudrate: int = Field(115200, gt=0, le=4_000_000, description="galvo controller baud rate (8N1)")
    galvo_max_fast_hz: float = Field(100.0, gt=0, description="limit: fast-axis frequency the host may command (Hz)")
    galvo_max_slow_hz: float = Field(10.0, gt=0, description="limit: slow-axis frequency the host may command (Hz)")
    fast_offset_m: float = Field(0.0, description="fast-axis aim offset at the standoff plane (m)")
    slow_offset_m: float = Field(0.0, description="slow-axis aim offset at the standoff plane (m)")
    park_x_m: float = Field(0.0, description="park position, fast axis, at the standoff plane (m)")
    park_y_m: float = Field(0.0, description="park position, slow axis, at the standoff plane (m)")
    galvo_watchdog_s: float = Field(10.0, ge=0, description="controller parks itself after this long without a "
                                    "host command while scanning (s); 0 disables")
    # --- FMCW receiver (VISA / SCPI) ---
    receiver_resource: str = Field("TCPIP::127.0.0.1::5025::SOCKET", min_length=1,
                                   description="VISA resource of the FMCW receiver (any VISA resource string)")
    visa_library: str = Field("@py", description="pyvisa backend: '@py' is pyvisa-py")
    read_termination: str = Field("\n", min_length=1, description="SCPI reply terminator")
    write_termination: str = Field("\n", min_length=1, description="SCPI command terminator")
    chunk_size: int = Field(1 << 20, ge=1024, description="largest receive per call for binary blocks (bytes); "
                            "the CRC is updated per chunk as it arrives")
    block_reader: Literal["exact", "pyvisa"] = Field(
        "exact", description="binary block reads: 'exact' (header, then exactly the announced bytes received "
        "straight into a preallocated buffer, terminator off) or 'pyvisa' (query_binary_values: the conformance "
        "path; slow on pyvisa-py sockets for blocks holding many 0x0A bytes)")
    frame_buffers: int = Field(4, ge=1, le=64, description="preallocated raw-frame buffers the IF blocks are "
                               "received into; one is reused once no frame built on it is alive (more in use: "
                               "a fresh one, not kept)")
    stream_lines: int = Field(0, ge=0, le=1024, description="fetch each frame in parts of this many lines "
                              "(FETC:PART?) while the galvo still sweeps, publishing each on `lines` as it arrives, "
                              "so that at scan complete only the last part is left to read and gate; 0 reads the "
                              "whole frame after *OPC? (FETC:FRAM?)")
    line_trigger_timeout_s: float = Field(0.5, gt=0, description="receiver aborts a frame when no galvo line "
                                          "trigger arrives for this long (s)")
    # --- I/O policy ---
    timeout_s: float = Field(5.0, gt=0, description="I/O timeout for one query (s); a frame wait adds the frame time")
    reconnect_initial_s: float = Field(0.25, gt=0, description="first reconnect backoff (s), doubled per failure")
    reconnect_max_s: float = Field(8.0, gt=0, description="cap of the reconnect backoff (s)")
    reconnect_max_attempts: int = Field(8, ge=1, description="failed reconnects in a row before the daemon fails")
    max_bad_frames: int = Field(10, ge=1, description="rejected frames in a row before the daemon fails")
    min_feedback_span: float = Field(0.5, gt=0, le=1.0, description="a frame whose fast-axis feedback spans less "
                                     "than this fraction of the commanded 2 x amplitude is rejected (stalled galvo)")
    # --- publishing ---
    raw_endpoint: str = Field("tcp://127.0.0.1:5555", description="ZMQ PUB endpoint of the `raw` topic")
    status_endpoint: str = Field("tcp://127.0.0.1:5556", description="ZMQ PUB endpoint of the `status` topic")
    heartbeat_s: float = Field(1.0, gt=0, description="interval of `status` heartbeats (s)")
    raw_hwm: int = Field(8, ge=1, description="ZMQ send high-water mark of `raw` (frames; PUB drops beyond it)")
    curve_secret_key_file: str = Field("", description="ZMQ CURVE server certificate (zmq.auth format, with secret "
                                       "key); required to bind a non-loopback endpoint")
    curve_clients_dir: str = Field("", description="directory of authorised client public certificates; required "
                                   "with curve_secret_key_file")
    # --- recording ---
    record_dir: str = Field("", description="directory of HDF5 session recordings (empty: recordings/ in the data "
                                           "directory, $THZ_DATA_DIR or the per-user one; thzcore.datadirs)")
    record: bool = Field(True, description="record every frame to HDF5")
    record_compression: Literal["gzip", "lzf", "none"] = Field(
        "gzip", description="lossless compression of the raw IF block in recordings: gzip (level 1 + shuffle, 60 % "
                            "of the bytes, ~0.3 s of one core per 8 MB frame), lzf (71 %, ~0.17 s) or none")
    calibration_id: str = Field("", description="id of the calibration record in force ('' = uncalibrated), "
                                "named in every recording and raw frame")

    @property
    def record_root(self) -> Path:
        """The recordings folder: `record_dir` as given, else recordings/ in the data directory."""
        return datadirs.resolve(self.record_dir, datadirs.RECORDINGS)

    @field_validator("visa_library")
    @classmethod
    def _backend(cls, v: str) -> str:
        if v and not v.startswith("@") and "/" not in v:
            raise ValueError(f"visa_library={v!r}: use '@py' (pyvisa-py), '@ivi' or a path to a VISA library")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "AcquisitionConfig":
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError(f"acquisition.reconnect_max_s={self.reconnect_max_s} is below reconnect_initial_s="
                             f"{self.reconnect_initial_s}; raise the cap")
        if bool(self.curve_secret_key_file) != bool(self.curve_clients_dir):
            raise ValueError("acquisition.curve_secret_key_file and curve_clients_dir go together: set both "
                             "(server certificate and the directory of authorised client certificates) or neither")
        if self.raw_endpoint == self.status_endpoint and not self.raw_endpoint.endswith(":*"):
            raise ValueError(f"acquisition.raw_endpoint and status_endpoint are both {self.raw_endpoint!r}; "
                             "give each topic its own endpoint")
        return self


class AcquisitionSettings(Protocol):
    """The sections the acquisition daemon reads; the composed pipeline.settings.Settings is one."""

    @property
    def scanner(self) -> ScannerConfig: ...

    @property
    def acquisition(self) -> AcquisitionConfig: ...

    def model_dump_json(self) -> str: ...

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Any: ...
