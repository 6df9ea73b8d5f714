from django.contrib.admin.apps import AdminConfig


class SwitchboardAdminConfig(AdminConfig):
    default_site = "tenants.admin_site.SwitchboardAdminSite"
