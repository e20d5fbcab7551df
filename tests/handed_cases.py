"""Access to tests/cases/cases.json: small inputs with their right values.

Each case comes from a fault that users of other frameworks reported. The file is a
copy kept in the repository, so the suite runs the same cases everywhere.
"""

import json
from pathlib import Path

CASES_FILE = Path(__file__).resolve().parent / "cases" / "cases.json"


def load_cases(section):
    """Return the list of cases under ``section`` ("losses" or "training")."""
    return json.loads(CASES_FILE.read_text(encoding="utf-8"))[section]


def case(section, case_id):
    """Return the one case with ``case_id``; a KeyError names a missing id."""
    for item in load_cases(section):
        if item["id"] == case_id:
            return item
    raise KeyError(f"no handed case {case_id!r} in section {section!r} of {CASES_FILE}")
