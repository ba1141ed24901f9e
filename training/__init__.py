"""training package of thz-face."""
