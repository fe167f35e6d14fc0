"""braggflow: XFEL diffraction frames to a deployed neural Bragg-peak finder."""

__version__ = "0.1.0"
