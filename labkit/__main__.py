"""`python -m labkit ...`: the same command line as `labkit ...`."""
import sys

from labkit.tools.cli import main

if __name__ == "__main__":
    sys.exit(main())
