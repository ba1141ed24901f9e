"""calibration package of thz-face."""
