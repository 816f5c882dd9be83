# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""``anomalib-medclip``: anomalib's own CLI with the plugin imported first.

The stock ``anomalib`` command already sees the plugin through the start-up hook; this command is the fallback for
interpreters where ``.pth`` hooks do not run (``python -S``/``-I``) or where ``ANOMALIB_MEDCLIP_AUTOLOAD=0``. It also
applies ``--seed_everything``, which anomalib 2.7 parses but never applies.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def _seed_from_argv(argv: list[str]) -> int | None:
    for index, arg in enumerate(argv):
        if arg.startswith("--seed_everything="):
            value = arg.split("=", 1)[1]
        elif arg == "--seed_everything" and index + 1 < len(argv):
            value = argv[index + 1]
        else:
            continue
        return int(value) if value.lstrip("-").isdigit() else None
    return None


def main() -> None:
    """Run anomalib's CLI with the plugin's short names registered."""
    import anomalib_medclip  # noqa: F401 - registers the plugin classes with jsonargparse's subclass lookup

    if (seed := _seed_from_argv(sys.argv[1:])) is not None:
        from lightning.pytorch import seed_everything

        seed_everything(seed, workers=True)

    from anomalib.cli.cli import main as anomalib_main

    anomalib_main()


if __name__ == "__main__":
    main()
