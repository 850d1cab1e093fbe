"""``python -m benchmarks``: see :mod:`benchmarks.cli`."""

import sys

if __name__ == "__main__":
    try:
        from benchmarks.cli import main
    except KeyboardInterrupt:  # Ctrl-C while the command starts: nothing ran yet, no traceback
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
