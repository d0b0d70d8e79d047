"""Widgets: the panes and the pieces they are made of."""
