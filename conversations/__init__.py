"""The durable record of every contact: conversations, turns, leads, appointment requests, voicemails."""
