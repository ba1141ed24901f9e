"""The fits of the calibration measurements: pure NumPy/SciPy, arrays in, values with uncertainties out."""
