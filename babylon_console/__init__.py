"""Babylon Console: reinforcement learning for Babylon's LLM trading agents from recorded games."""

__version__ = "0.1.0"
