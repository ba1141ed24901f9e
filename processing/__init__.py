"""processing package of thz-face."""
