"""Printing: Markdown tables (so figures paste into a README as they are) and the targets."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


def num(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def percentiles(values: list[float]) -> tuple[float, float]:
    """(p50, p99) of the values, 0 for none."""
    if len(values) < 2:
        return (values[0], values[0]) if values else (0.0, 0.0)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98]


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def cpu_row(label: str, cpu: dict[str, float], wall_s: float) -> list[str]:
    used = ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items() if seconds >= 0.05)
    return [label, f"{wall_s:.1f}", used or "-"]


@dataclass
class Goal:
    section: str
    figure: str
    value: float
    target: float
    unit: str
    at_least: bool  # True: value must reach the target; False: must stay under it

    @property
    def met(self) -> bool:
        return self.value >= self.target if self.at_least else self.value <= self.target

    @property
    def of_target(self) -> float:
        """How far along: above 1 is better than the target either way."""
        if self.at_least:
            return self.value / self.target if self.target else 0.0
        return self.target / self.value if self.value > 0 else float("inf")

    def row(self) -> list[str]:
        sign = ">=" if self.at_least else "<="
        shown = f"{self.value:,.2f}" if abs(self.value) < 100 else f"{self.value:,.0f}"
        target = f"{self.target:,.2f}" if abs(self.target) < 100 else f"{self.target:,.0f}"
        return [self.figure, f"{shown} {self.unit}".strip(), f"{sign} {target} {self.unit}".strip(),
                f"{self.of_target:.2f}", "met" if self.met else "NOT met"]


GOAL_HEADERS = ["figure", "value", "target", "value/target", "met?"]


@dataclass
class Summary:
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, goal: Goal) -> Goal:
        self.goals.append(goal)
        return goal


def print_table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}\n" if title else "")
    print(table(headers, rows))
