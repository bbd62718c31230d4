"""Atom, RSS and JSON Feed documents."""
