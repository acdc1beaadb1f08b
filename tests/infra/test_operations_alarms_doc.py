"""docs/OPERATIONS.md's table of alarms against the alarms every stage synthesizes: each alarm
has its line (the CIS alarms one line, `cis-*`), and every line an alarm."""
from __future__ import annotations

import re

from tests.conftest import ROOT

OPERATIONS = (ROOT / "docs" / "OPERATIONS.md").read_text()


def documented_alarms() -> set[str]:
    table = re.search(r"^### Alarms\n.*?^\| alarm \| fires when \| first look \|\n\|[-| ]+\|\n((?:\|[^\n]*\n)+)",
                      OPERATIONS, re.M | re.S)
    assert table, "docs/OPERATIONS.md has no table of alarms"
    return {re.match(r"\| `([^`]+)`", row).group(1) for row in table.group(1).splitlines()}  # type: ignore[union-attr]


def test_the_alarms_table_is_the_alarms_the_stages_make(synthesized):
    made = set()
    for (stage, _part), template in synthesized.items():
        for resource in template.get("Resources", {}).values():
            if resource["Type"] == "AWS::CloudWatch::Alarm":
                name = resource["Properties"]["AlarmName"].removeprefix(f"llm-ide-{stage}-")
                made.add("cis-*" if name.startswith("cis-") else name)
    documented = documented_alarms()
    assert documented == made, f"not documented: {sorted(made - documented)}; gone: {sorted(documented - made)}"
