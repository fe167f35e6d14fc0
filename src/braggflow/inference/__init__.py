"""Stage 8: Ray producer-consumer inference writing CrystFEL-compatible peak lists.

``pipeline`` (Ray actors and the driver), ``worker`` (the overlapped model loop; imports torch),
``source`` (frame sources, model-input preparation), ``peaks`` (peaks from masks), ``writer``
(chunked part files, the merged CXI output), ``monitor`` (metrics and plot), ``scoring``
(precision/recall against simulator ground truth). Import the submodules you need: this package
imports nothing heavy.
"""
