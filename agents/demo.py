"""Demo agents: the dental office's own agent and the answering service's agent can take calls."""

from __future__ import annotations

from agents.models import AgentProfile
from tenants.models import User

DEMO_AGENTS = (
    ("agent@demo.test", "+15555550150", ["scheduling", "dental_emergency"]),
    ("agency@demo.test", "+15555550160", ["scheduling", "dental_emergency"]),
    ("owner@demo.test", "+15555550170", ["scheduling"]),
)


def load_agents_demo() -> None:
    for email, phone, skills in DEMO_AGENTS:
        user = User.objects.get(email=email)
        AgentProfile.objects.get_or_create(user=user, defaults={"phone_number": phone, "skills": skills, "capacity": 2})
