"""Stores in this process or one file: memory, a mapping (localStorage), SQLite."""
