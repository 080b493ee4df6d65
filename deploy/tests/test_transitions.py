"""Transition budgets (issue 24): plain backup <= 3, hooks <= 15 on the one-round path, copies
without polling. Prints the table (deploy/tests/TRANSITIONS.md has it with the "before")."""

from __future__ import annotations

import sys
import unittest

from transitions import measure_after, table


class Transitions(unittest.TestCase):
    def test_budgets(self):
        rows = measure_after()
        print("\n" + table(rows, None), file=sys.stderr)
        self.assertLessEqual(rows["plain backup"][0], 3)
        self.assertEqual(rows["plain backup"][0], 2, "the lead's target")
        self.assertLessEqual(rows["backup with pre + post hook"][0], 15)
        self.assertLessEqual(rows["backup + 1 copy (copy execution)"][0], 10)


if __name__ == "__main__":
    unittest.main()
