"""Run a module under cProfile counting CPU time (time.process_time), not wall time, so time
spent waiting on sockets does not show: bench/run.py --profile starts the api, workers and
sandbox through this.

    python bench/profiled.py OUT_FILE -m engine.cli worker

The profile is written when the module returns, exits or is interrupted (the bench stops
profiled processes with SIGINT: uvicorn raises the signal again after shutting down, and only
KeyboardInterrupt lets this finally block run)."""

from __future__ import annotations

import cProfile
import runpy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, as `python -m` would have it


def main() -> None:
    out, flag, module, *rest = sys.argv[1:]
    if flag != "-m":
        raise SystemExit("usage: profiled.py OUT_FILE -m MODULE [ARGS...]")
    sys.argv = [module, *rest]
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        profile.disable()
        profile.dump_stats(out)


if __name__ == "__main__":
    main()
