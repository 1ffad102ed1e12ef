"""Thought-trace inspection: an HTML report, a local server, a terminal view, comparisons across rounds."""
