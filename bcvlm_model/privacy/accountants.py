"""Names of the privacy accountants bcvlm accepts (no torch or Opacus import, so configs can check them cheaply)."""

from __future__ import annotations

ACCOUNTANTS: tuple[str, ...] = ("rdp", "prv")
"""Accountants whose history composes every recorded round. Opacus' "gdp" keeps only the last (noise, rate) pair of
a history, so a ledger replayed through it under-reports a multi-round spend: it is refused."""
