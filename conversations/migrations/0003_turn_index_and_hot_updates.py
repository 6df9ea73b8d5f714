import django.db.models.deletion
from django.db import migrations, models

# A conversation row is updated on every turn (its engine state) and by status events, and none of those
# updates touches an indexed column. With free room in its page PostgreSQL can make each update a HOT
# update (no new entry in any of the table's indexes); at the default fill factor (100) pages are full and
# every turn wrote a new entry into all nine of them.
CONVERSATION_FILLFACTOR = 70


def set_fillfactor(apps, schema_editor, value=CONVERSATION_FILLFACTOR):
    if schema_editor.connection.vendor == "postgresql":
        table = schema_editor.quote_name(apps.get_model("conversations", "Conversation")._meta.db_table)
        schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = {int(value)})")


def reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        table = schema_editor.quote_name(apps.get_model("conversations", "Conversation")._meta.db_table)
        schema_editor.execute(f"ALTER TABLE {table} RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0002_callbacks"),
    ]

    operations = [
        migrations.AlterField(
            model_name="turn",
            name="conversation",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="turns",
                to="conversations.conversation",
            ),
        ),
        migrations.RunPython(set_fillfactor, reset_fillfactor, elidable=False),
    ]
