from django.db import migrations, models
from django.utils.text import slugify


def fill_slugs(apps, schema_editor):  # type: ignore[no-untyped-def]
    Connection = apps.get_model("connections", "Connection")
    taken: dict[object, set[str]] = {}
    for connection in Connection.objects.order_by("created_at"):
        used = taken.setdefault(connection.organization_id, set())
        base = slugify(connection.name)[:40].strip("-_") or "server"
        candidate, counter = base, 2
        while candidate in used:
            suffix = f"-{counter}"
            candidate = base[: 40 - len(suffix)].strip("-_") + suffix
            counter += 1
        used.add(candidate)
        connection.slug = candidate
        connection.save(update_fields=["slug"])


class Migration(migrations.Migration):
    dependencies = [("connections", "0002_catalog_and_health")]

    operations = [
        migrations.AddField(
            model_name="connection",
            name="slug",
            field=models.SlugField(default="", max_length=40),
            preserve_default=False,
        ),
        migrations.RunPython(fill_slugs, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="connection",
            constraint=models.UniqueConstraint(
                fields=("organization", "slug"), name="connection_slug_unique_per_organization"
            ),
        ),
    ]
