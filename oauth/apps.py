from django.apps import AppConfig


class OauthConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "oauth"
    verbose_name = "People and access"
