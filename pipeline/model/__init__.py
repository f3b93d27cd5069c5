"""Models: features, training, evaluation metrics and their HTML report, the promotion gate (cost,
fairness, the comparison with the champion), the signed registry, and batch scoring."""
