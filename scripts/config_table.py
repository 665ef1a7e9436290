"""Rewrite the config reference in docs/configuration.md (between the config-table markers) from
`config.describe()`, the schema's own list of keys, defaults and descriptions.

    python scripts/config_table.py
"""

import re
from pathlib import Path

from charlstm import config

PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
MARKERS = re.compile(r"<!-- config-table -->.*?<!-- /config-table -->", flags=re.S)


def table() -> str:
    """The key table, markers included, exactly as docs/configuration.md must hold it."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    rows += [f"| `{k}` | `{v}` | {d} |" for k, v, d in config.describe()]
    return "<!-- config-table -->\n" + "\n".join(rows) + "\n<!-- /config-table -->"


if __name__ == "__main__":
    text = PAGE.read_text(encoding="utf-8")
    if not MARKERS.search(text):
        raise SystemExit(f"{PAGE} has no <!-- config-table --> ... <!-- /config-table --> markers")
    PAGE.write_text(MARKERS.sub(lambda _: table(), text), encoding="utf-8")
    print(f"updated {PAGE}")
