"""inference package of thz-face."""
