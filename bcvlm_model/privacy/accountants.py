"""The privacy accountants bcvlm accepts (no torch or Opacus import, so configs can check them cheaply)."""

from __future__ import annotations

from enum import StrEnum


class Accountant(StrEnum):
    """Accountants whose history composes every recorded round (the value is Opacus' mechanism name).

    Opacus' "gdp" keeps only the last (noise, rate) pair of a history, so a ledger replayed through it under-reports a
    multi-round spend: it is not a member, so a config naming it is refused at load."""

    rdp = "rdp"
    prv = "prv"
