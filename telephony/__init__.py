"""Telephony: Vonage NCCO rendering, signed-webhook verification and the outbound voice client."""
