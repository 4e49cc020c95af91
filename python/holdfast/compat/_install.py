"""``holdfast.compat.install()``: make ``import filelock`` (and the other
originals) give the compat modules, in this process and in its Python
subprocesses.

Like ``pymysql.install_as_MySQLdb()``, for code you do not own::

    import holdfast.compat
    holdfast.compat.install("filelock", "flufl.lock")
    import filelock            # -> holdfast.compat.filelock
    import flufl.lock          # -> holdfast.compat.flufl_lock

In this process, a finder placed first on ``sys.meta_path`` answers for the
originals' module names (and their submodules, e.g. ``filelock.asyncio``,
``lockfile.pidlockfile``); modules of an original imported earlier are
dropped from ``sys.modules`` so the next import gets the compat module
(objects already imported stay what they were).

Subprocesses: :func:`install` also sets the environment variable
``HOLDFAST_COMPAT`` (a comma-separated list of originals, or ``all``),
which children inherit. The holdfast wheel installs a ``holdfast-compat.pth``
file into site-packages that, at interpreter start, installs the same
aliases when ``HOLDFAST_COMPAT`` is set; so does importing
``holdfast.compat`` with the variable set. Setting the variable yourself
(``HOLDFAST_COMPAT=filelock python app.py``) switches a program without
touching its code.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from typing import Dict, Iterable, List, Optional, Sequence

__all__ = ["install", "uninstall", "installed", "ENV_VAR", "ORIGINALS"]

#: The environment variable children read at start-up (see module docs).
ENV_VAR = "HOLDFAST_COMPAT"

#: original module name -> compat module name.
ORIGINALS: Dict[str, str] = {
    "filelock": "holdfast.compat.filelock",
    "phaselock": "holdfast.compat.phaselock",
    "flufl.lock": "holdfast.compat.flufl_lock",
    "lockfile": "holdfast.compat.lockfile",
    "libvcs._internal.file_lock": "holdfast.compat.libvcs_file_lock",
    "stouputils.lock": "holdfast.compat.stouputils_lock",
}

#: Other spellings accepted by install().
_SPELLINGS = {
    "flufl_lock": "flufl.lock",
    "flufl-lock": "flufl.lock",
    "libvcs_file_lock": "libvcs._internal.file_lock",
    "stouputils_lock": "stouputils.lock",
}

_active: Dict[str, str] = {}


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"an original's module name must be a str, not {type(name).__name__}")
    n = _SPELLINGS.get(name.strip(), name.strip())
    if n not in ORIGINALS:
        raise ValueError(f"holdfast.compat has no module for {name!r}; known: {', '.join(sorted(ORIGINALS))}, all")
    return n


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: Optional[str]) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        if self.target is None:  # a stand-in parent package (e.g. "flufl" when flufl.lock is not installed)
            mod = types.ModuleType(spec.name)
            mod.__path__ = []
            return mod
        mod = importlib.import_module(self.target)
        self._spec = mod.__spec__
        return mod

    def exec_module(self, module: types.ModuleType) -> None:
        # The import system stamped the alias's spec on the module: give it back its own.
        if self.target is not None and getattr(self, "_spec", None) is not None:
            module.__spec__ = self._spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Answers imports of the installed originals' names with the compat modules."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Optional[types.ModuleType] = None) -> Optional[importlib.machinery.ModuleSpec]:
        for alias, compat in list(_active.items()):
            if fullname == alias or fullname.startswith(alias + "."):
                real = compat + fullname[len(alias):]
                if importlib.util.find_spec(real) is None:
                    return None
                return importlib.util.spec_from_loader(fullname, _AliasLoader(real), is_package=True)
            if alias.startswith(fullname + "."):
                # A parent of an alias ("flufl", "libvcs._internal"): the real one if it exists, else a stand-in.
                for finder in sys.meta_path:
                    if finder is self or not hasattr(finder, "find_spec"):
                        continue
                    spec = finder.find_spec(fullname, path, target)
                    if spec is not None:
                        return spec
                return importlib.util.spec_from_loader(fullname, _AliasLoader(None), is_package=True)
        return None


_finder = _AliasFinder()


def _names(originals: Iterable[str]) -> List[str]:
    out: List[str] = []
    for o in originals:
        for part in str(o).split(","):
            part = part.strip()
            if not part:
                continue
            if part == "all":
                out.extend(ORIGINALS)
            else:
                out.append(_canonical(part))
    return list(dict.fromkeys(out))


def install(*originals: str, subprocesses: bool = True) -> List[str]:
    """Makes ``import <original>`` give holdfast's compat module.

    ``originals``: module names of the originals (``"filelock"``,
    ``"phaselock"``, ``"flufl.lock"``, ``"lockfile"``,
    ``"libvcs._internal.file_lock"``, ``"stouputils.lock"``) or ``"all"``;
    none means all. With ``subprocesses`` (the default) the choice is also
    written to ``os.environ["HOLDFAST_COMPAT"]`` for child processes.
    Returns the originals now switched.

    Raises ``ValueError`` for a name holdfast has no compat module for."""
    names = _names(originals or ("all",))
    for name in names:
        _active[name] = ORIGINALS[name]
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            if not getattr(sys.modules[mod], "__name__", "").startswith("holdfast.compat"):
                del sys.modules[mod]
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    if subprocesses:
        os.environ[ENV_VAR] = ",".join(sorted(_active))
    return sorted(_active)


def uninstall(*originals: str) -> None:
    """Undoes :func:`install` for ``originals`` (none: all), here and in the
    environment variable. Modules already imported stay imported."""
    names = _names(originals) if originals else list(_active)
    for name in names:
        _active.pop(name, None)
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            if getattr(sys.modules[mod], "__name__", "").startswith("holdfast.compat"):
                del sys.modules[mod]
    if _active:
        os.environ[ENV_VAR] = ",".join(sorted(_active))
    else:
        os.environ.pop(ENV_VAR, None)
        if _finder in sys.meta_path:
            sys.meta_path.remove(_finder)


def installed() -> List[str]:
    """The originals currently switched to holdfast in this process."""
    return sorted(_active)


def _from_environment() -> None:
    """Installs what ``HOLDFAST_COMPAT`` names (at interpreter start-up, via
    the ``.pth`` file). A bad name is reported on stderr, never fatal."""
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return
    try:
        install(value, subprocesses=False)
    except (ValueError, TypeError) as err:
        sys.stderr.write(f"holdfast.compat: ignoring {ENV_VAR}={value!r}: {err}\n")
