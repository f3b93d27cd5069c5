"""Operations: the audit trail and on-call alerts (what a person is told, and what is kept)."""
