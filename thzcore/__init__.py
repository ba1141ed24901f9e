"""Shared kernel of thz-face: config base, scanner geometry, wire protocol, raw frames, logging."""
from thzcore.config import Section, ConfigError, load_toml
from thzcore.scanner import ScannerConfig, SPEED_OF_LIGHT
from thzcore.frames import RawFrame
from thzcore.logs import setup_logging, get_logger

__all__ = [
    "Section", "ConfigError", "load_toml", "ScannerConfig", "SPEED_OF_LIGHT",
    "RawFrame", "setup_logging", "get_logger",
]
