"""Operator flows of the console, outside the widgets: each controller owns one kind of action
(engine control, registry actions, the demo's market, the event feed) and the rule that refuses it."""
