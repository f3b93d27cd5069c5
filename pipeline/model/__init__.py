"""What decides whether a model may serve: the cost of its errors, fairness across groups of
the sensitive attributes, and the comparison with the current champion."""
