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

        from agents import callbacks

        hooks.on_leg_event(callbacks.on_callback_leg_event)
        hooks.on_callback_scheduled(callbacks.on_callback_scheduled)

        from agents import voicemails

        hooks.on_voicemail_recorded(voicemails.on_voicemail_recorded)
        hooks.on_voicemail_transcribed(voicemails.on_voicemail_transcribed)
