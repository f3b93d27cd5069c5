"""Data intake: reading a day's delivery from its source, the frozen data contract, typing and
ingesting it, the privacy gate, Great Expectations validation, quarantine, and training snapshots."""
