"""Keep Paddle's and PaddleNLP's start-up chatter out of the builder's output."""
from __future__ import annotations

import logging
import os
import sys
import warnings


def quiet_frameworks(import_paddlenlp: bool = True) -> None:
    """Environment and log levels that keep Paddle and PaddleNLP quiet. `import_paddlenlp`
    False leaves PaddleNLP's own logger alone unless it is already imported (importing it
    takes about 18 s: the unit tests do not)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    # Paddle's dygraph CPU kernels run single-threaded unless OpenMP is told otherwise
    # (1.6x faster training of the example on 2 cores). Must precede `import paddle`.
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    os.environ.setdefault("GLOG_v", "0")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("paddlenlp").setLevel(logging.WARNING)
    if not import_paddlenlp and "paddlenlp" not in sys.modules:
        return
    try:
        from paddlenlp.utils.log import logger as paddlenlp_logger

        paddlenlp_logger.set_level("WARNING")
    except Exception:  # paddlenlp missing or changed: chatter is harmless
        pass
