"""Keep Paddle's and PaddleNLP's start-up chatter out of the builder's output."""
from __future__ import annotations

import logging
import os
import warnings


def quiet_frameworks() -> None:
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("GLOG_v", "0")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("paddlenlp").setLevel(logging.WARNING)
    try:
        from paddlenlp.utils.log import logger as paddlenlp_logger

        paddlenlp_logger.set_level("WARNING")
    except Exception:  # paddlenlp missing or changed: chatter is harmless
        pass
