"""pipeline: the composed settings, the pre-scan gate, and the Pipeline that wires the stages for `thz run`.

Public names are imported lazily so that `pipeline.settings` stays light for the config loader.
"""
from __future__ import annotations

from thzcore.lazy import lazy_exports

_LAZY = {
    "Settings": "pipeline.settings", "load_settings": "pipeline.settings",
    "prepare_scan": "pipeline.prescan",
    "Pipeline": "pipeline.compose", "JobError": "pipeline.compose", "JobConfigError": "pipeline.compose", "run_sim": "pipeline.run", "run_hardware": "pipeline.run",
    "LiveView": "pipeline.view",
}
__getattr__, __all__ = lazy_exports(__name__, _LAZY)
