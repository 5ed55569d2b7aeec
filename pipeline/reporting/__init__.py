"""After a run: the summary read back from ML Metadata (`run_summary`) and the HTML report."""
