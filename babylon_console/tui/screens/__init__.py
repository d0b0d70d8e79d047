"""Screens: the main console screen and the help screen."""
