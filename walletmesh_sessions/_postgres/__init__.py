"""The PostgreSQL family."""
