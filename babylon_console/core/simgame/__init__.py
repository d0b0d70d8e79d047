"""simgame."""
