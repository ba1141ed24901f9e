"""The acquisition exception hierarchy: what the daemon does with an error is decided by its base class.

    AcquisitionError
      +- LinkSuspect          the transport can no longer be trusted: close, reopen, re-identify, re-apply
      +- DeviceFault          the instrument reported a problem (error queue, stall): park, drop the frame
      +- FrameRejected        a frame arrived but failed validation (CRC, feedback): drop it, keep the link
      +- ConfigurationError   settings the instruments or the limits refuse: fatal, with the field named
      +- DeviceNotFound       a device address that names nothing at the start (no such serial port): fatal
Each driver (galvo, receiver) subclasses these and keeps the instrument's own code and text.
"""
from __future__ import annotations


class AcquisitionError(Exception):
    """Base of every acquisition error."""


class LinkSuspect(AcquisitionError):
    """Timeout, OS error, broken framing or a stale reply: the link must be reopened before any further query."""


class DeviceFault(AcquisitionError):
    """The instrument works but reports a fault (error queue entry, servo stall, aborted frame)."""


class FrameRejected(AcquisitionError):
    """A frame arrived intact on the link but is not trustworthy (checksum, shape, feedback)."""


class ConfigurationError(AcquisitionError, ValueError):
    """A setting the limits or the instrument refuse; retrying cannot help."""


class DeviceNotFound(AcquisitionError):
    """A device path that does not exist when a session starts (an unplugged adapter, a mistyped port): nothing
    to retry, so the start fails at once with the path named. During a session the same absence is a LinkSuspect
    (a USB adapter re-plugged comes back under its name)."""


class InstrumentErrorMixin:
    """Keeps the instrument's own error code and text, as pyvisa's VisaIOError keeps error_code."""

    def __init__(self, message: str, code: int = 0, text: str = "", command: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.text = text
        self.command = command
