"""Snapshot.command points at AgentCommand where it lives now (apps.agents); the table and its
foreign key constraint are the same, so only Django's state changes.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0001_initial'),
        ('snapshots', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.AlterField(
                model_name='snapshot',
                name='command',
                field=models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='snapshot', to='agents.agentcommand'),
            ),
        ]),
    ]
