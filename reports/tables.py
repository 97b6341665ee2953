"""Tables a method registers (`harness.plots.register_table`), e.g. ELAD's accuracy against teacher budget: each a
function of the run's manifest and results, written to `tables/<name>.csv` and shown in report.html."""
from __future__ import annotations

import pandas as pd

from trustbench.harness.plots import RunView
from trustbench.harness.registry import TABLES
from trustbench.harness.store import Manifest, RunDir
from trustbench.reports.figures import import_recipes


def method_tables(run: RunDir, manifest: Manifest, results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every registered table the run has data for, by name (the recipes the manifest names are imported)."""
    import_recipes(manifest)
    view = RunView(run, manifest, results)
    tables = {}
    for name, function in TABLES.items():
        table = function(view)
        if table is not None and not table.empty:
            tables[name] = table
    return tables


def table_csv(table: pd.DataFrame) -> str:
    return table.to_csv(index=False, lineterminator="\n", float_format="%.10g")
