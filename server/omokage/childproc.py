"""What the server's helper processes (the event store's writer, the sketch worker, the sharper previews) start with."""

from __future__ import annotations

import os
from pathlib import Path


def child_env(**overrides: str) -> dict[str, str]:
    """This process's environment for a `python -c "from omokage... import main"` child: omokage importable however this
    process found it (an installed package, or a source tree on sys.path), plus `overrides`."""
    import omokage
    env = dict(os.environ)
    package_root = str(Path(omokage.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.update(overrides)
    return env
