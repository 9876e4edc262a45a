"""When scheduled rules run. Pure: from a cron expression and the clock to the tick that is due.

Every worker runs the same small loop (workers/settings.py): every few seconds it asks for each
scheduled rule's latest tick and enqueues a scan job whose id names the rule and the tick. arq
queues a job id once, so however many workers there are, each tick is scanned once. A tick
missed while no worker ran is caught up if it is recent (HOOKRULES_SCHEDULE_CATCHUP); older
ones are skipped, not piled up.
"""

from __future__ import annotations

from datetime import datetime, timezone

from croniter import croniter


def latest_tick(expression: str, now: float) -> float:
    """The most recent time at or before `now` (epoch seconds) that matches `expression`, in UTC."""
    moment = datetime.fromtimestamp(now, tz=timezone.utc)
    if croniter.match(expression, moment.replace(second=0, microsecond=0)):
        return moment.replace(second=0, microsecond=0).timestamp()
    return croniter(expression, moment).get_prev(datetime).timestamp()


def due_tick(expression: str, now: float, catch_up_s: float) -> float | None:
    """The tick to run now, or None when the latest one is older than the catch-up window."""
    tick = latest_tick(expression, now)
    return tick if now - tick <= catch_up_s else None


def scan_job_id(rule_id: str, tick: float) -> str:
    return f"scan:{rule_id}:{int(tick)}"
