"""Report area: tables, statistics and figures from the workflow's score files (``descbench report``)."""
