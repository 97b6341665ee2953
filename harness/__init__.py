"""trustbench's core (`trustbench.harness`): types, errors, registries, the run directory, engines, scoring formats,
metrics, statistics (every interval, bootstrap and chance rule), calibration, plots, training, the model zoo, the teacher cache, the lm-eval adapter and the
suite config. It imports nothing from the layers above it (`tasks`, `baselines`, `reports`, the app)."""
