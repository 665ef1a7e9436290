"""`python -m charlstm.cli ...`: the same entry point as the `charlstm` console script."""

from charlstm.cli import main

main()
