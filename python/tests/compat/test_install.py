"""holdfast.compat.install(): `import filelock` (etc.) gives the compat
module, in this process and in Python subprocesses (HOLDFAST_COMPAT)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PTH = os.path.join(os.path.dirname(__file__), "..", "..", "holdfast-compat.pth")


def run(code: str, env=None) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=env if env is not None else dict(os.environ))
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_install_in_process_and_subprocess():
    code = """
import os, subprocess, sys
import holdfast.compat
assert holdfast.compat.install("filelock", "flufl.lock", "lockfile") == ["filelock", "flufl.lock", "lockfile"]
import filelock, flufl.lock, lockfile.pidlockfile
from filelock.asyncio import AsyncUnixFileLock
print(filelock.__name__, flufl.lock.__name__, lockfile.pidlockfile.__name__, AsyncUnixFileLock.__module__)
assert filelock.FileLock is holdfast.compat.filelock.FileLock
print(os.environ["HOLDFAST_COMPAT"])
# a child inherits the choice through the environment (here via importing holdfast.compat)
print(subprocess.run([sys.executable, "-c", "import holdfast.compat, filelock; print('child', filelock.__name__)"],
                     capture_output=True, text=True, check=True).stdout.strip())
holdfast.compat.uninstall()
assert "HOLDFAST_COMPAT" not in os.environ and holdfast.compat.installed() == []
"""
    out = run(code).split("\n")
    assert out[0] == ("holdfast.compat.filelock holdfast.compat.flufl_lock holdfast.compat.lockfile.pidlockfile "
                      "holdfast.compat.filelock.asyncio")
    assert out[1] == "filelock,flufl.lock,lockfile"
    assert out[2] == "child holdfast.compat.filelock"


def test_pth_start_up_hook(tmp_path):
    """The wheel's holdfast-compat.pth installs the aliases at interpreter
    start when HOLDFAST_COMPAT is set (site.addsitedir runs .pth files as
    start-up does)."""
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    with open(PTH) as src:
        (site_dir / "holdfast-compat.pth").write_text(src.read())
    code = f"import site; site.addsitedir({str(site_dir)!r}); import phaselock; print(phaselock.__name__)"
    env = dict(os.environ, HOLDFAST_COMPAT="phaselock")
    assert run(code, env).strip() == "holdfast.compat.phaselock"
    env.pop("HOLDFAST_COMPAT")
    try:
        import phaselock  # noqa: F401
    except ImportError:
        pytest.skip("phaselock not installed: nothing to compare with")
    assert run(code, env).strip() == "phaselock"


def test_replaces_an_original_imported_earlier_and_rejects_unknown_names():
    code = """
import holdfast.compat
try:
    import filelock as before
except ImportError:
    before = None
holdfast.compat.install("filelock", subprocesses=False)
import filelock
assert filelock.__name__ == "holdfast.compat.filelock"
import os
assert "HOLDFAST_COMPAT" not in os.environ
try:
    holdfast.compat.install("nosuchlib")
except ValueError as e:
    print("refused", e)
"""
    env = {k: v for k, v in os.environ.items() if k != "HOLDFAST_COMPAT"}
    assert "refused" in run(code, env)
