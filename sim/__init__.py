"""sim package of thz-face."""
