"""``ufd-eval``: test sets, scores under conditions, metrics, re-upload stability, reports."""
