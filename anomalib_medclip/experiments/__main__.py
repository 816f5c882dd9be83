# Copyright (C) 2026 anomalib-medclip developers
# SPDX-License-Identifier: Apache-2.0
"""``python -m anomalib_medclip.experiments``: the ``anomalib-medclip-grid`` command."""

import sys

from anomalib_medclip.experiments.cli import main

sys.exit(main())
