"""Imported at interpreter start by ``holdfast-compat.pth`` when
``HOLDFAST_COMPAT`` is set: installs the aliases it names."""

from ._install import _from_environment

_from_environment()
