"""Flows: scripts, intents, FAQ, hours and the engine that runs them."""
