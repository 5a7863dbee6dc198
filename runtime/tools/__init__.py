"""Tools that build, maintain and measure bundles without torch.

Index building, calibration, evaluation and reports, benchmarks, the feature cache.
"""
