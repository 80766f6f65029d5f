"""The agent, race and wake models left this app for apps.agents, apps.races and
apps.hibernation, whose first migrations took them over with their tables unchanged; here they
leave Django's state of this app only. Their content types follow them, so admin history and
permissions stay attached.
"""

from django.db import migrations

MOVED = {
    "agent": "agents", "agentcommand": "agents", "agentsample": "agents",
    "race": "races", "racecandidate": "races", "straymachine": "races",
    "wake": "hibernation",
}


def _relabel(apps, schema_editor, *, moving_out: bool) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    types = ContentType.objects.using(schema_editor.connection.alias)
    for model, app in MOVED.items():
        old, new = ("instances", app) if moving_out else (app, "instances")
        if not types.filter(app_label=new, model=model).exists():
            types.filter(app_label=old, model=model).update(app_label=new)


def follow(apps, schema_editor):
    _relabel(apps, schema_editor, moving_out=True)


def follow_back(apps, schema_editor):
    _relabel(apps, schema_editor, moving_out=False)


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0001_initial'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('hibernation', '0001_initial'),
        ('instances', '0004_hibernation'),
        ('races', '0001_initial'),
        ('snapshots', '0002_alter_snapshot_command'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.RemoveField(
                model_name='agent',
                name='instance',
            ),
            migrations.RemoveField(
                model_name='agentcommand',
                name='instance',
            ),
            migrations.RemoveField(
                model_name='wake',
                name='restore_command',
            ),
            migrations.RemoveField(
                model_name='agentsample',
                name='instance',
            ),
            migrations.RemoveField(
                model_name='race',
                name='instance',
            ),
            migrations.RemoveField(
                model_name='race',
                name='winner',
            ),
            migrations.RemoveField(
                model_name='racecandidate',
                name='race',
            ),
            migrations.RemoveField(
                model_name='wake',
                name='race',
            ),
            migrations.DeleteModel(
                name='StrayMachine',
            ),
            migrations.RemoveField(
                model_name='wake',
                name='instance',
            ),
            migrations.RemoveField(
                model_name='wake',
                name='snapshot',
            ),
            migrations.DeleteModel(
                name='Agent',
            ),
            migrations.DeleteModel(
                name='AgentCommand',
            ),
            migrations.DeleteModel(
                name='AgentSample',
            ),
            migrations.DeleteModel(
                name='RaceCandidate',
            ),
            migrations.DeleteModel(
                name='Race',
            ),
            migrations.DeleteModel(
                name='Wake',
            ),
        ]),
        migrations.RunPython(follow, follow_back),
    ]
