"""Shared test setup: the repository root is importable (also in spawned worker processes, which inherit
sys.path), and no per-run progress bars clutter the test output."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("BENCHMARKS_NO_PROGRESS", "1")
