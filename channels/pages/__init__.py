"""The public HTML pages and the press office console."""
