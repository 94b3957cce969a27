"""Logging set-up shared by the command-line verbs: Kaldi/ESPnet-style lines
``2026-11-28 10:00:00 (compute_feats.py:42) INFO: message`` on stderr."""
from __future__ import annotations

import logging
import os

FORMAT = "%(asctime)s (%(filename)s:%(lineno)d) %(levelname)s: %(message)s"


def setup_logging(verbose: int = 0) -> None:
    level = logging.DEBUG if verbose > 0 else logging.INFO
    if os.environ.get("S3PRL_LOG_LEVEL"):
        level = getattr(logging, os.environ["S3PRL_LOG_LEVEL"].upper(), level)
    logging.basicConfig(level=level, format=FORMAT, datefmt="%Y-%m-%d %H:%M:%S", force=True)
