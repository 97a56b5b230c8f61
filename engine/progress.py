"""The shapes of the progress callbacks long work reports through, defined once.

- ``StepProgress(step, fraction)``: what is happening now and how far (0..1) the whole is; conversions,
  benchmarks, OCR runs. The UI renders it as a progress bar, the CLI as one rewritten line.
- ``CountProgress(done, total)``: items finished out of all; embedding batches.
- The ingest pipeline reports richer events (``engine.pipeline.ProgressEvent``: stage, file, counts,
  message) through ``engine.pipeline.EventProgress``.
"""

from __future__ import annotations

from collections.abc import Callable

StepProgress = Callable[[str, float], None]
CountProgress = Callable[[int, int], None]
