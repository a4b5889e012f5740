"""Cleans up what jobs leave behind: local scratch folders today, orphaned objects later."""
