"""Scanner geometry and FMCW parameters shared by sim, acquisition, processing and calibration.

Symbols (SI units throughout):
    f_c    carrier frequency (Hz), lambda = c / f_c
    w0     Gaussian beam waist radius (1/e^2 intensity), z_R = pi w0^2 / lambda
    B      chirp bandwidth (Hz), T_c chirp duration (s), S = B / T_c chirp slope (Hz/s)
    f_s    IF sample rate (Hz), N samples per chirp = f_s T_c
    R_ref  range of the delayed reference: beat f_b = 2 S (R - R_ref) / c
    dR     range resolution c / (2 B); one FFT bin of N samples spans exactly dR
"""
from __future__ import annotations

import math

from pydantic import Field, model_validator

from thzcore.config import Section

SPEED_OF_LIGHT = 299_792_458.0  # m/s


class OpticsConfig(Section):
    carrier_hz: float = Field(340e9, gt=0, description="carrier frequency (Hz)")
    standoff_m: float = Field(6.0, gt=0, description="nominal distance scanner -> subject (m)")
    beam_diameter_m: float = Field(0.015, gt=0, description="1/e^2 intensity diameter at the waist (m)")
    waist_range_m: float = Field(6.0, gt=0, description="range of the beam waist from the scanner (m)")
    peak_power_density_mw_cm2: float = Field(2.0, gt=0, description="peak power density on target (mW/cm^2)")

    @property
    def wavelength_m(self) -> float:
        return SPEED_OF_LIGHT / self.carrier_hz

    @property
    def w0_m(self) -> float:
        return self.beam_diameter_m / 2.0

    @property
    def rayleigh_range_m(self) -> float:  # z_R = pi w0^2 / lambda
        return math.pi * self.w0_m**2 / self.wavelength_m

    @property
    def depth_of_focus_m(self) -> float:  # 2 z_R
        return 2.0 * self.rayleigh_range_m

    @property
    def divergence_rad(self) -> float:  # theta0 = lambda / (pi w0)
        return self.wavelength_m / (math.pi * self.w0_m)

    def beam_radius_m(self, range_m: float) -> float:
        """w(z) = w0 sqrt(1 + ((z - z_waist)/z_R)^2)."""
        dz = range_m - self.waist_range_m
        return self.w0_m * math.sqrt(1.0 + (dz / self.rayleigh_range_m) ** 2)


class RasterConfig(Section):
    fov_x_m: float = Field(0.45, gt=0, description="field of view along the fast axis at the standoff (m)")
    fov_y_m: float = Field(0.45, gt=0, description="field of view along the slow axis at the standoff (m)")
    fast_axis_hz: float = Field(32.0, gt=0, description="fast-axis sinusoid frequency (Hz)")
    slow_axis_hz: float = Field(1.0, gt=0, description="slow-axis sawtooth frequency (Hz), one frame per period")
    bidirectional: bool = Field(True, description="use both sweep directions of the fast axis")
    fill_fraction: float = Field(0.8, gt=0.1, le=1.0, description="fraction of each line's time kept (turnarounds dropped)")
    samples_per_line: int = Field(256, ge=8, description="uniform output samples per line after de-warp")
    servo_natural_hz: float = Field(300.0, gt=0, description="galvo servo natural frequency (Hz), 2nd-order model")
    servo_damping: float = Field(0.6, gt=0, description="galvo servo damping ratio zeta")
    feedback_delay_s: float = Field(50e-6, ge=0, description="position-sensor and ADC delay of the feedback (s)")
    max_fast_amplitude_m: float = Field(0.40, gt=0, description="limit: fast-axis half amplitude at the standoff (m)")
    max_slow_amplitude_m: float = Field(0.30, gt=0, description="limit: slow-axis half amplitude at the standoff (m)")

    @model_validator(mode="after")
    def _lines(self) -> "RasterConfig":
        per_period = 2 if self.bidirectional else 1
        lines = per_period * self.fast_axis_hz / self.slow_axis_hz
        if int(round(lines)) < 1:
            raise ValueError(
                f"raster.fast_axis_hz={self.fast_axis_hz} and slow_axis_hz={self.slow_axis_hz} give {lines:.3g} "
                f"lines per frame ({per_period} x fast / slow); a frame needs at least 1 line: raise fast_axis_hz "
                "or lower slow_axis_hz")
        return self

    @property
    def lines_per_frame(self) -> int:
        """Lines per frame = (2 if bidirectional else 1) * f_fast / f_slow."""
        per_period = 2 if self.bidirectional else 1
        return int(round(per_period * self.fast_axis_hz / self.slow_axis_hz))

    @property
    def line_duration_s(self) -> float:
        return 1.0 / ((2.0 if self.bidirectional else 1.0) * self.fast_axis_hz)

    @property
    def frame_duration_s(self) -> float:
        return 1.0 / self.slow_axis_hz

    @property
    def fast_amplitude_m(self) -> float:
        """Half amplitude A of x(t) = A sin(2 pi f t) so the kept fill fraction spans fov_x.

        The kept part of a half period is centred on the zero crossing and lasts
        fill * T/2, so it reaches phase +-pi/2 * fill and x = +-A sin(pi/2 * fill) = +-fov/2.
        """
        return 0.5 * self.fov_x_m / math.sin(0.5 * math.pi * self.fill_fraction)

    @property
    def pixel_pitch_x_m(self) -> float:
        return self.fov_x_m / self.samples_per_line

    @property
    def pixel_pitch_y_m(self) -> float:
        return self.fov_y_m / self.lines_per_frame

    @property
    def servo_lag_s(self) -> float:
        """Time lag of the 2nd-order servo at the fast-axis frequency: phase / omega."""
        r = self.fast_axis_hz / self.servo_natural_hz
        phase = math.atan2(2.0 * self.servo_damping * r, 1.0 - r * r)
        return phase / (2.0 * math.pi * self.fast_axis_hz)


class FmcwConfig(Section):
    chirp_bandwidth_hz: float = Field(15e9, gt=0, description="chirp bandwidth B (Hz)")
    chirp_duration_s: float = Field(25.6e-6, gt=0, description="sampled chirp duration T_c (s)")
    sample_rate_hz: float = Field(5e6, gt=0, description="IF digitizer sample rate f_s (Hz)")
    samples_per_chirp: int = Field(128, ge=8, description="IF samples per chirp N = f_s T_c")
    chirps_per_line: int = Field(512, ge=16, description="chirps recorded per fast-axis line")
    reference_range_m: float = Field(5.68, gt=0, description="range R_ref of the delayed reference (m)")
    adc_bits: int = Field(14, ge=8, le=16, description="digitizer resolution (bits), stored as int16")

    @property
    def slope_hz_per_s(self) -> float:  # S = B / T_c
        return self.chirp_bandwidth_hz / self.chirp_duration_s

    @property
    def range_resolution_m(self) -> float:  # dR = c / 2B
        return SPEED_OF_LIGHT / (2.0 * self.chirp_bandwidth_hz)

    def beat_hz(self, range_m: float) -> float:
        """f_b = 2 S (R - R_ref) / c."""
        return 2.0 * self.slope_hz_per_s * (range_m - self.reference_range_m) / SPEED_OF_LIGHT

    def range_of_beat(self, beat_hz: float) -> float:
        return self.reference_range_m + beat_hz * SPEED_OF_LIGHT / (2.0 * self.slope_hz_per_s)

    @property
    def max_range_m(self) -> float:
        """Far edge of the unambiguous window: the beat reaches Nyquist f_s / 2."""
        return self.range_of_beat(self.sample_rate_hz / 2.0)

    @property
    def bin_hz(self) -> float:
        return self.sample_rate_hz / self.samples_per_chirp

    def range_bin(self, range_m: float) -> float:
        """Fractional FFT bin index of a range: f_b / (f_s / N) = (R - R_ref) / dR."""
        return self.beat_hz(range_m) / self.bin_hz

    @model_validator(mode="after")
    def _consistent(self) -> "FmcwConfig":
        n = self.sample_rate_hz * self.chirp_duration_s
        if abs(n - self.samples_per_chirp) > 1e-6 * n:
            raise ValueError(
                f"fmcw.samples_per_chirp={self.samples_per_chirp} but sample_rate_hz * chirp_duration_s = {n:g}; "
                "set samples_per_chirp to their product or change the rate/duration"
            )
        return self


class ScannerConfig(Section):
    """The scanner section: optics, raster and FMCW. Derived values are properties."""

    scanner_id: str = Field("thz340-sim-01", min_length=1, description="scanner serial, named in records and results")
    optics: OpticsConfig = OpticsConfig()
    raster: RasterConfig = RasterConfig()
    fmcw: FmcwConfig = FmcwConfig()

    @property
    def chirp_period_s(self) -> float:
        return self.raster.line_duration_s / self.fmcw.chirps_per_line

    @property
    def raw_frame_shape(self) -> tuple[int, int, int]:
        """(lines, chirps_per_line, samples_per_chirp) of int16 IF samples."""
        return (self.raster.lines_per_frame, self.fmcw.chirps_per_line, self.fmcw.samples_per_chirp)

    @property
    def raw_frame_bytes(self) -> int:
        lines, chirps, samples = self.raw_frame_shape
        return lines * chirps * samples * 2

    @property
    def beat_band_hz(self) -> tuple[float, float]:
        """Beat frequencies of targets between the reference range and the far window edge."""
        return (0.0, self.fmcw.sample_rate_hz / 2.0)

    @model_validator(mode="after")
    def _consistent(self) -> "ScannerConfig":
        if self.chirp_period_s < self.fmcw.chirp_duration_s:
            raise ValueError(
                f"fmcw.chirps_per_line={self.fmcw.chirps_per_line}: {self.fmcw.chirps_per_line} chirps of "
                f"{self.fmcw.chirp_duration_s * 1e6:.2f} us do not fit in one line of "
                f"{self.raster.line_duration_s * 1e3:.3f} ms; lower chirps_per_line to at most "
                f"{int(self.raster.line_duration_s / self.fmcw.chirp_duration_s)}"
            )
        r_ref = self.fmcw.reference_range_m
        if not (r_ref < self.optics.standoff_m < self.fmcw.max_range_m):
            raise ValueError(
                f"optics.standoff_m={self.optics.standoff_m} lies outside the FMCW range window "
                f"[{r_ref:.3f}, {self.fmcw.max_range_m:.3f}] m; move fmcw.reference_range_m a little "
                "in front of the standoff"
            )
        if self.raster.fast_amplitude_m > self.raster.max_fast_amplitude_m:
            raise ValueError(
                f"raster.fov_x_m={self.raster.fov_x_m} needs a fast-axis amplitude of "
                f"{self.raster.fast_amplitude_m:.3f} m, above raster.max_fast_amplitude_m="
                f"{self.raster.max_fast_amplitude_m}; reduce the field of view or raise the limit"
            )
        if self.raster.fov_y_m / 2 > self.raster.max_slow_amplitude_m:
            raise ValueError(
                f"raster.fov_y_m={self.raster.fov_y_m} exceeds 2 * raster.max_slow_amplitude_m; "
                "reduce the field of view or raise the limit"
            )
        return self
