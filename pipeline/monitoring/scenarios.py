"""The injected-drift scenarios and their default strengths (what each does: monitoring/simulate.py).
A module of names only, so the CLI can offer them without importing pandas."""

DEFAULT_STRENGTH = {
    "none": 0.0,
    "covariate_shift": 1.0,
    "category_mix": 0.5,
    "concept_drift": 0.4,
    "data_break": 1.0,
    "correlation_break": 1.0,
    "segment_shift": 0.8,
    "labels_stop": 1.0,
}
SCENARIOS = tuple(DEFAULT_STRENGTH)
