"""Allow ``python -m oldnew``."""

from oldnew.cli import main

main()
