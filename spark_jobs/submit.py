"""The spark-submit entry file: ``spark-submit [spark options] spark_jobs/submit.py --input ... --output ...``.

spark-submit needs a *file* to run, and the arguments after it are the pipeline's own (``python -m
spark_jobs.pipeline --help``). This file only hands them to :func:`spark_jobs.pipeline.main`, so the pipeline runs as
the module ``spark_jobs.pipeline`` (imported from ``--py-files slm_pretrain.zip`` or the installed wheel), never as
``__main__``: anything it pickles for the executors then has the same importable name on every node.
``make dist`` copies this file to ``dist/submit.py``, next to the zip and the wheel.
"""

from __future__ import annotations

import os
import sys

# Python puts the script's own directory first on sys.path. Run from the source tree that directory is spark_jobs/,
# whose modules (config, storage, session, ...) would shadow any top-level module of the same name; drop it.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

from spark_jobs.pipeline import main  # noqa: E402  (needs the sys.path fix above)

if __name__ == "__main__":
    sys.exit(main())
