"""The Textual operators' console. Imports the core, never the other way round."""
