"""thz: the one command line of thz-face (cli.py and commands/)."""
from thzcore.provenance import __version__

__all__ = ["__version__"]
