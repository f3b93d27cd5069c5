"""Monitoring of the champion after promotion: reference profile (stored at training
time), drift statistics with fixed and calibrated thresholds, data quality, realized and
estimated performance, the retraining policy, the report, and drift scenarios."""
