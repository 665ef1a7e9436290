"""charlstm: character-level LSTM / GRU / RNN language models on JAX.

    import charlstm

    model = charlstm.load()                          # the newest run in runs/, its latest checkpoint
    print(model.sample("The ", length=200)[0])
    model = charlstm.train("my.txt", config="tiny")  # train, then the same methods

See `charlstm.api` for `load`, `train` and the `Model` they return. Importing the package is cheap: JAX is
imported by the first function that needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from charlstm.errors import ConfigError, CorpusError, RunError, UsageError, UserError

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "CorpusError",
    "Model",
    "RunError",
    "SampleOptions",
    "UsageError",
    "UserError",
    "__version__",
    "auto_size",
    "load",
    "train",
]

if TYPE_CHECKING:
    from charlstm.api import Model, auto_size, load, train
    from charlstm.nn.sampling import SampleOptions

_API = ("Model", "auto_size", "load", "train")


def __getattr__(name: str) -> Any:
    # The API module is loaded on first use, so `import charlstm` (and the CLI's start-up) stays light.
    if name in _API:
        from charlstm import api

        return getattr(api, name)
    if name == "SampleOptions":
        from charlstm.nn.sampling import SampleOptions

        return SampleOptions
    raise AttributeError(f"module 'charlstm' has no attribute {name!r}")
