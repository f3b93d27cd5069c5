"""Data intake: the frozen data contract, reading a day's delivery, and quarantine."""
