"""trustbench: a benchmark and evaluation harness for trustworthy (accurate and calibrated) distilled LMs.

The package is the app on top of its layers: `trustbench.harness` (the core: contracts, engines, metrics, the run
directory), `trustbench.tasks`, `trustbench.baselines` and `trustbench.reports` (each imports the core and itself),
and here the composition root (`runner`, `cli`, `__main__`), the only modules that import every layer.

The public plugin API, for methods, figures and tables of your own (loaded on first use, so that importing any
part of trustbench costs no more than that part):

    from trustbench import Method, Context, StudentArtifact, register_method, RunView, register_figure, register_table
"""
from __future__ import annotations

__version__ = "0.1.0"

METHOD_API = ("Context", "Method", "StudentArtifact", "register_method")
REPORT_API = ("RunView", "register_figure", "register_table")
__all__ = [*METHOD_API, *REPORT_API, "__version__"]


def __getattr__(name: str):
    if name in METHOD_API:
        from trustbench import baselines

        return getattr(baselines, name)
    if name in REPORT_API:
        from trustbench.harness import plots

        return getattr(plots, name)
    raise AttributeError(f"module 'trustbench' has no attribute {name!r}")
