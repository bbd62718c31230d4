"""The timeline: what an entry is, the rules every append obeys, the one write path, drafts."""
