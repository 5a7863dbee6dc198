"""What adds to a bundle without torch: k-NN banks, density models, calibrated thresholds.

The engines of ``ufd-index`` and ``ufd-calibrate`` (``ufd-train``'s trainers need torch:
:mod:`ufd.export.train`).
"""
