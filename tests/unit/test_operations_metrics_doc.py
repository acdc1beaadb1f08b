"""docs/OPERATIONS.md's table of metrics against chalicelib/observability/metric_names.py: every
metric the app emits is there once, with its unit and dimension, and nothing else is."""
from __future__ import annotations

import re

from chalicelib.observability import metric_names
from tests.conftest import ROOT

OPERATIONS = (ROOT / "docs" / "OPERATIONS.md").read_text()


def documented_metrics() -> dict[str, tuple[str, str | None]]:
    """metric -> (unit, its own dimension or None), from the table under "### Metrics"."""
    table = re.search(r"^### Metrics\n.*?^\| metric \| unit \| dimension \|[^\n]*\n\|[-| ]+\|\n((?:\|[^\n]*\n)+)",
                      OPERATIONS, re.M | re.S)
    assert table, "docs/OPERATIONS.md has no table of metrics"
    metrics: dict[str, tuple[str, str | None]] = {}
    for row in table.group(1).splitlines():
        names, unit, dimension = (cell.strip() for cell in row.split("|")[1:4])
        for name in re.findall(r"`(\w+)`", names):
            assert name not in metrics, f"{name} is documented twice"
            metrics[name] = (unit.split()[0], dimension.strip("`") or None)
    return metrics


def test_the_metrics_table_is_the_metrics_the_app_emits():
    documented = documented_metrics()
    emitted = {metric.name: (metric.unit, metric.dimension_sets[-1][-1] if len(metric.dimension_sets) > 1 else None)
               for metric in metric_names.ALL}
    assert set(documented) == set(emitted), (f"not documented: {sorted(set(emitted) - set(documented))}; "
                                             f"documented but not emitted: {sorted(set(documented) - set(emitted))}")
    wrong = {name: (documented[name], emitted[name]) for name in emitted if documented[name] != emitted[name]}
    assert not wrong, f"(the doc's, the code's) unit and dimension differ: {wrong}"
