from django.urls import path

from tenants import views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("app/", views.app_home, name="app-home"),
    path("t/<slug:tenant_slug>/", views.tenant_home, name="tenant-home"),
]
