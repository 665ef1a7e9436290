"""Rewrite the command reference in docs/commands.md (between the `<!-- command: NAME -->` markers) from the command
line itself: each command's usage line, its summary, every argument and option with its value and default as
`--help` shows them, and its examples (`charlstm.cli.EXAMPLES`). So every option is documented by construction.

    python scripts/commands_doc.py
"""

from __future__ import annotations

import re
from pathlib import Path

from typer import _click as click
from typer.main import get_command

from charlstm import cli

PAGE = Path(__file__).resolve().parent.parent / "docs" / "commands.md"
MARKERS = re.compile(r"<!-- command: ([a-z -]+) -->\n.*?<!-- /command -->", flags=re.S)


def commands() -> dict[str, tuple[click.Command, click.Context]]:
    """Every command a user runs ("train", "corpus get", ...) with a context to format it in."""
    root = get_command(cli.app)
    found: dict[str, tuple[click.Command, click.Context]] = {}

    def walk(command: click.Command, ctx: click.Context, name: str) -> None:
        subs: dict[str, click.Command] = getattr(command, "commands", {})
        if not subs:
            found[name] = (command, ctx)
        for key, sub in subs.items():
            walk(sub, click.Context(sub, info_name=key, parent=ctx), f"{name} {key}".strip())

    walk(root, click.Context(root, info_name="charlstm"), "")
    return found


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def block(name: str) -> str:
    """The reference of one command, markers included, exactly as docs/commands.md must hold it."""
    command, ctx = commands()[name]
    usage = " ".join(["charlstm", name, *command.collect_usage_pieces(ctx)])
    rows = ["| argument or option | what it does |", "|---|---|"]
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is not None and record[0] != "--help":
            rows.append(f"| `{_cell(record[0])}` | {_cell(record[1])} |")
    width = max(len(cmd) for cmd, _ in cli.EXAMPLES[name])
    examples = [f"{cmd:<{width}}  # {what}" if what else cmd for cmd, what in cli.EXAMPLES[name]]
    summary = " ".join((command.help or "").split())
    return "\n".join(
        [f"<!-- command: {name} -->", "```text", usage, "```", "", summary, "", *rows, "", "```bash", *examples, "```"]
        + ["<!-- /command -->"]
    )


def rewrite(text: str) -> str:
    """`text` with every command block regenerated."""
    return MARKERS.sub(lambda m: block(m.group(1)), text)


if __name__ == "__main__":
    page = PAGE.read_text(encoding="utf-8")
    missing = sorted(set(commands()) - set(MARKERS.findall(page)))
    if missing:
        raise SystemExit(f"{PAGE} has no <!-- command: NAME --> ... <!-- /command --> block for {', '.join(missing)}")
    PAGE.write_text(rewrite(page), encoding="utf-8")
    print(f"updated {PAGE}")
