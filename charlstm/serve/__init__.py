"""`charlstm serve`: a local web page where you type and watch a run's gates and memory cells read the text.

    app.py       the Starlette application: the page, its static files and the JSON endpoints
    analysis.py  what the endpoints compute: per-character gates, states and next-character distributions
    static/      the page itself (HTML, CSS, JavaScript), shipped in the package so it works offline

Starlette and uvicorn come with the `serve` extra (pip install "charlstm[serve]"); `require` says so in one line
when they are missing. Endpoints are described in docs/serve.md.
"""

from __future__ import annotations

from charlstm.errors import UserError

INSTALL = 'pip install "charlstm[serve]"'


def require() -> None:
    """Raise a UserError naming the install command when the web stack is not installed."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise UserError(
            f"charlstm serve needs starlette and uvicorn ({err.name} is not installed)", f"install them with: {INSTALL}"
        ) from None
