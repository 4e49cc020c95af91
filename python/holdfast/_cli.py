"""The ``holdfast`` command installed by the wheel: the Rust CLI itself
(``holdfast_cli::run``), run inside this interpreter."""

from __future__ import annotations

import signal
import sys


def main() -> None:
    # Behave as the standalone binary does: Ctrl-C and a closed pipe end
    # the command by their default action (Python catches SIGINT and
    # ignores SIGPIPE and SIGXFSZ, and commands holdfast spawns would
    # inherit the ignored ones).
    for name in ("SIGINT", "SIGPIPE", "SIGXFSZ"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, signal.SIG_DFL)
    from . import _native

    sys.exit(_native.cli_main(sys.argv))


if __name__ == "__main__":
    main()
