"""trustbench: a benchmark and evaluation harness for trustworthy (accurate and calibrated) distilled LMs."""

__version__ = "0.1.0"
