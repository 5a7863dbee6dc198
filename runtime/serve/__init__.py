"""``ufd-serve``: the resident HTTP service (``ufd[serve]``): app, uploads, engine, metrics."""
