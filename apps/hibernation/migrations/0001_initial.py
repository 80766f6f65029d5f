"""Wake moves here from apps.instances. Its table keeps its name (instances_wake): only Django's
state changes, no row or column is touched.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('agents', '0001_initial'),
        ('instances', '0004_hibernation'),
        ('races', '0001_initial'),
        ('snapshots', '0002_alter_snapshot_command'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.CreateModel(
                name='Wake',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('source', models.CharField(choices=[('paused', 'paused machine started'), ('hibernated', 'new machine, snapshot restored')], max_length=20)),
                    ('actor', models.CharField(max_length=150)),
                    ('requested_at', models.DateTimeField(auto_now_add=True)),
                    ('fell_back_to_race_at', models.DateTimeField(blank=True, null=True)),
                    ('machine_ready_at', models.DateTimeField(blank=True, help_text='SSH handshake done.', null=True)),
                    ('restore_started_at', models.DateTimeField(blank=True, null=True)),
                    ('running_at', models.DateTimeField(blank=True, null=True)),
                    ('failed_at', models.DateTimeField(blank=True, null=True)),
                    ('error', models.TextField(blank=True)),
                    ('instance', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='wakes', to='instances.instance')),
                    ('race', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='races.race')),
                    ('restore_command', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='agents.agentcommand')),
                    ('snapshot', models.ForeignKey(blank=True, help_text='Restored onto the new machine.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='snapshots.snapshot')),
                ],
                options={
                    'db_table': 'instances_wake',
                    'ordering': ['-requested_at'],
                },
            ),
        ]),
    ]
