from django.urls import path

from telephony import views

urlpatterns = [
    path("vonage/answer", views.answer, name="vonage-answer"),
    path("vonage/event", views.event, name="vonage-event"),
    path("vonage/fallback", views.fallback, name="vonage-fallback"),
    path("vonage/input/<int:conversation_id>/", views.call_input, name="vonage-input"),
    path("vonage/recording/<int:conversation_id>/", views.recording, name="vonage-recording"),
    path("vonage/transcription/<int:conversation_id>/", views.transcription, name="vonage-transcription"),
]
