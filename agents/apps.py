from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Live agents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # agents sits above conversations and telephony: it subscribes, they never import agents.
        from agents import voice
        from conversations import hooks

        hooks.on_escalated(voice.on_conversation_escalated)
        hooks.on_ended(voice.on_conversation_ended)
        hooks.on_leg_event(voice.on_agent_leg_event)
