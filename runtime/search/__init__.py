"""Nearest-neighbour search: the labelled bank, the k-NN vote, and bundle banks."""
