"""Small shared helpers (atomic file writing, logging set-up)."""
