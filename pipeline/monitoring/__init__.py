"""Monitoring of the champion after promotion: reference profile (stored at training time), a
registry of drift statistics with fixed and calibrated thresholds, data quality, realized and
estimated performance, shadow comparison, the retraining policy, the report, and drift scenarios."""
