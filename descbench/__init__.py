"""descbench: reproduce and benchmark learned local patch descriptors."""

from descbench.errors import DescbenchError

__version__ = "0.1.0"
__all__ = ["DescbenchError", "__version__"]
