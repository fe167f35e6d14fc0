"""Stage 9: hit rate, indexing rate, indexing yield, unit cells, and scores against ground truth."""
