"""Modal dialogs: confirm, promote, engine settings, error."""
