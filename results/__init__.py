"""Reference numbers shipped with cmkd-bench (the paper's tables) and the folder runs write into."""

from importlib import resources
from pathlib import Path


def paper_tables_path() -> Path:
    """Path of the paper's own numbers (Tables 1-4, weighted F1 in percent)."""
    return Path(str(resources.files(__name__).joinpath("paper-tables.csv")))
