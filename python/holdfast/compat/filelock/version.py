"""The filelock version this module reproduces, and holdfast's own."""

from ... import __version__ as holdfast_version

#: The filelock release whose API and on-disk formats this module follows.
version = "4.2.12"
__version__ = version
__version_tuple__ = version_tuple = (4, 2, 12)

__all__ = ["version", "__version__", "version_tuple", "__version_tuple__", "holdfast_version"]
