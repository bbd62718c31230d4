"""What the press office is held to: timeliness, key figures, questions, the audit log."""
