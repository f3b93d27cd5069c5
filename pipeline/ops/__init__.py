"""Operations: the audit trail, on-call alerts, run metrics, storage maintenance, progress and thread
budgets (what a person is told, what is kept, and what a task may use)."""
