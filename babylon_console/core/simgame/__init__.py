"""The simulated game on the offline path: history written as the game writes it (`seeding`), the
simulated agents served by checkpoints (`serving`), a live market with its gateway (`live_market`)
and the demo's own database (`demo`)."""
