"""Check results: one ``Check`` per named check, and a ``CheckReport`` and table per instance."""

from dataclasses import dataclass, field


@dataclass
class Check:
    """The outcome of one named check: pass or fail, the measured error and its tolerance."""

    name: str
    passed: bool
    error: float | None = None
    tolerance: float | None = None
    detail: str = ""


@dataclass
class CheckReport:
    """Every check run on one layer or loss. ``passed`` is True when all of them passed."""

    kind: str
    name: str
    checks: list = field(default_factory=list)

    @property
    def passed(self):
        return all(check.passed for check in self.checks)

    @property
    def failures(self):
        """The checks that failed."""
        return [check for check in self.checks if not check.passed]

    def names(self):
        """Return the check names in the order they ran."""
        return [check.name for check in self.checks]

    def __getitem__(self, name):
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"no check named {name!r}; the report has {', '.join(self.names())}")

    def __iter__(self):
        return iter(self.checks)

    def __len__(self):
        return len(self.checks)

    def __str__(self):
        return format_reports([self])

    def assert_passed(self):
        """Raise AssertionError with the table of failed checks unless every check passed."""
        if not self.passed:
            failed = CheckReport(self.kind, self.name, self.failures)
            raise AssertionError(f"{self.kind} {self.name} failed {len(self.failures)} "
                                 f"check(s):\n{format_reports([failed])}")


# Tables


_COLUMNS = ("kind", "name", "check", "result", "error", "tolerance", "detail")


def format_reports(reports):
    """Return the checks of ``reports`` as a plain-text table, one row per check."""
    rows = [_COLUMNS]
    for report in reports:
        for check in report.checks:
            rows.append((report.kind, report.name, check.name,
                         "pass" if check.passed else "FAIL",
                         _format_number(check.error), _format_number(check.tolerance),
                         check.detail))

    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths)]
        lines.append("  ".join(cells + [row[-1]]).rstrip())
    return "\n".join(lines)


def _format_number(value):
    return "" if value is None else f"{value:.2g}"
