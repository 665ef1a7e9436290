"""Rewrite the README's config reference (between the config-table markers) from `config.describe()`.

    python scripts/readme_config_table.py
"""

import re
from pathlib import Path

from charlstm import config

README = Path(__file__).resolve().parent.parent / "README.md"

rows = ["| key | default | meaning |", "|---|---|---|"] + [f"| `{k}` | `{v}` | {d} |" for k, v, d in config.describe()]
table = "<!-- config-table -->\n" + "\n".join(rows) + "\n<!-- /config-table -->"
text = README.read_text(encoding="utf-8")
README.write_text(re.sub(r"<!-- config-table -->.*?<!-- /config-table -->", lambda _: table, text, flags=re.S), encoding="utf-8")
print(f"updated {README}")
