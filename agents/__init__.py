"""Live agents: profiles, presence, escalations, offers and routing (the runtime side of flows.Queue)."""
