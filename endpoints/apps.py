from django.apps import AppConfig


class EndpointsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "endpoints"
    verbose_name = "Endpoints"

    def ready(self) -> None:
        from connections.signals import catalog_changed, credentials_changed
        from endpoints.provider import catalog_changed_publish, credentials_changed_publish

        # A catalog refresh (health check, Check now, upstream list_changed) reaches
        # the clients of every endpoint that serves the server.
        catalog_changed.connect(catalog_changed_publish, dispatch_uid="endpoints.catalog_changed")
        # A credential added, renewed or removed: every process drops its cached targets.
        credentials_changed.connect(
            credentials_changed_publish, dispatch_uid="endpoints.credentials_changed"
        )
