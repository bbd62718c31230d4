"""What the press office is held to: timeliness, key figures, public questions, the audit
log."""
