# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""Interpreter start-up cost of the ``anomalib_medclip.pth`` hook (target: < 50 ms added to ``python -c pass``).

Run: ``python benchmarks/bench_startup.py``. Compares, in one run, bare start-up with the hook active and with
``ANOMALIB_MEDCLIP_AUTOLOAD=0`` (the .pth still imports the bootstrap, which then returns) and ``python -S``
(no site hooks at all).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time


def best_of(args: list[str], env: dict[str, str], runs: int = 15) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(args, env=env, check=True)
        times.append(time.perf_counter() - start)
    return min(times) * 1000


if __name__ == "__main__":
    base = dict(os.environ)
    hook = best_of([sys.executable, "-c", "pass"], base)
    off = best_of([sys.executable, "-c", "pass"], {**base, "ANOMALIB_MEDCLIP_AUTOLOAD": "0"})
    nosite = best_of([sys.executable, "-S", "-c", "pass"], base)
    print(f"python -c pass, hook active      : {hook:6.1f} ms (best of 15)")
    print(f"python -c pass, AUTOLOAD=0       : {off:6.1f} ms")
    print(f"python -S -c pass (no site hooks): {nosite:6.1f} ms")
    print(f"hook overhead vs AUTOLOAD=0      : {hook - off:+6.1f} ms (target < 50 ms)")
