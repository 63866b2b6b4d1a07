"""Print the uv flags that give uv the package sources this machine's pip is configured with.

uv reads no pip configuration; a machine whose pip lists local indexes, find-links or a
constraints file (pip.conf or PIP_* variables) should resolve the same way under both, so the
Makefile passes these flags to every ``uv pip install``. Prints nothing when pip has no such
settings.
"""

from __future__ import annotations

import shlex
import subprocess
import sys


def main() -> int:
    run = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    flags: list[str] = []
    for line in run.stdout.splitlines():
        key, _, value = line.partition("=")
        option = key.rsplit(".", 1)[-1]
        values = value.strip().strip("'\"").split()
        flag = {"index-url": "--index-url", "extra-index-url": "--extra-index-url",
                "find-links": "--find-links", "constraint": "--constraint"}.get(option)
        for item in values if flag else ():
            if [flag, item] != flags[-2:] and item not in flags:
                flags += [flag, item]
    if flags:
        # pip picks the best version over every source; uv's default stops at the first index.
        flags += ["--index-strategy", "unsafe-best-match"]
    print(shlex.join(flags))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
