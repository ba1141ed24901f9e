"""thz: the command line of thz-face and the composed configuration."""
__version__ = "0.1.0"
