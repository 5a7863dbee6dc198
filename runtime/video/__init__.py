"""Videos: sampled frames scored as images, then one record per video.

:mod:`ufd.runtime.io.containers` tells a video from an image by its first bytes; :mod:`.frames`
samples frames with PyAV (extra ``ufd[video]``), bounded and streaming;
:mod:`.records` turns a video's frame records into its record; :mod:`.run`
puts them in a run's flow (``ufd-detect`` and the Python API). The frames go
through the same decode -> preprocess -> encoder -> method steps as images.
"""
