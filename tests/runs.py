"""Run one resolved config through the engine in this process and read back what it stored."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.engine.spec import RunSpec, compute_run_id, execute_run


def run_to_done(config: dict, out: Path) -> dict:
    """Execute ``config`` into ``out``; assert it finished (showing the run's error and traceback if not) and
    return ``{"record": record.json, "history": [history.jsonl rows]}``."""
    spec = RunSpec(run_id=compute_run_id(config), config=config, out_dir=out)
    status = execute_run(spec)
    record = json.loads((spec.run_dir / "record.json").read_text())
    traceback = spec.run_dir / "traceback.txt"
    assert status == "done", (record.get("error"), traceback.read_text() if traceback.exists() else "")
    history = [json.loads(line) for line in (spec.run_dir / "history.jsonl").read_text().splitlines()]
    return {"record": record, "history": history}
