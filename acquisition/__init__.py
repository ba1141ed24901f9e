"""acquisition package of thz-face."""
