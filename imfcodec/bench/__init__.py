"""The rate-distortion benchmark behind `imfcodec rd-curve`: every method measured one way against the same
reference clips, then BD-rates, plots and a report."""
