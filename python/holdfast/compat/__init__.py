"""Drop-in replacements for the Python lock libraries holdfast grew from.

Each module reproduces its original's public API (names, signatures,
defaults, exceptions, ``__all__``, submodules) and speaks its on-disk
protocol, so a process using the compat module and one still running the
original exclude each other on the same path:

=========================  ==================================================
original                   change the import to
=========================  ==================================================
``filelock``               ``from holdfast.compat import filelock``
``phaselock``              ``from holdfast.compat import phaselock``
``flufl.lock``             ``from holdfast.compat import flufl_lock``
``lockfile``               ``from holdfast.compat import lockfile``
libvcs ``file_lock``       ``from holdfast.compat import libvcs_file_lock``
``stouputils.lock``        ``from holdfast.compat import stouputils_lock``
=========================  ==================================================

For code you do not own, :func:`install` makes ``import filelock`` (etc.)
give the compat module, in this process and, through the environment
variable ``HOLDFAST_COMPAT``, in every Python subprocess started after it.
"""

from __future__ import annotations

from ._install import ENV_VAR, install, installed, uninstall

__all__ = ["install", "uninstall", "installed", "ENV_VAR"]

# A process started with HOLDFAST_COMPAT set gets the aliases as soon as
# holdfast.compat is imported, even without the .pth start-up hook.
from ._install import _from_environment as _fe  # noqa: E402

_fe()
del _fe
