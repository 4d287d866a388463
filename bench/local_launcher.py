"""``devicehooks local`` for the benchmarks: the same command, with moto fixed first.

Run as ``python bench/local_launcher.py --port 0`` (see motopatch.py for what is fixed and why;
``BENCH_MOTO_PATCH=0`` runs moto as it is).
"""

from __future__ import annotations

import sys

import motopatch

from devicehooks.cli import main

if __name__ == "__main__":
    if motopatch.enabled():
        motopatch.apply()
    sys.exit(main(["local", *sys.argv[1:]]))
