"""Agent, AgentCommand and AgentSample move here from apps.instances. Their tables keep their
names (instances_agent, ...): only Django's state changes, no row or column is touched.
"""

import django.db.models.deletion
import uuid
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('instances', '0004_hibernation'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.CreateModel(
                name='Agent',
                fields=[
                    ('instance', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='agent', serialize=False, to='instances.instance')),
                    ('token_hash', models.CharField(blank=True, max_length=64, null=True, unique=True)),
                    ('status', models.CharField(choices=[('not_installed', 'Not Installed'), ('installing', 'Installing'), ('waiting', 'waiting for first heartbeat'), ('healthy', 'Healthy'), ('silent', 'stopped reporting'), ('failed', 'Failed')], default='not_installed', max_length=20)),
                    ('error', models.TextField(blank=True, help_text='Why the install failed, naming the step.')),
                    ('version', models.CharField(blank=True, max_length=30)),
                    ('install_started_at', models.DateTimeField(blank=True, null=True)),
                    ('installed_at', models.DateTimeField(blank=True, null=True)),
                    ('first_heartbeat_at', models.DateTimeField(blank=True, null=True)),
                    ('last_heartbeat_at', models.DateTimeField(blank=True, db_index=True, null=True)),
                    ('last_seq', models.BigIntegerField(default=0)),
                    ('samples_received', models.BigIntegerField(default=0, help_text='Also the next ring slot to write.')),
                    ('latest', models.JSONField(blank=True, help_text='The newest sample, as sent.', null=True)),
                ],
                options={
                    'db_table': 'instances_agent',
                },
            ),
            migrations.CreateModel(
                name='AgentCommand',
                fields=[
                    ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                    ('kind', models.CharField(max_length=30)),
                    ('args', models.JSONField(blank=True, default=dict)),
                    ('status', models.CharField(choices=[('pending', 'Pending'), ('delivered', 'delivered, not yet acknowledged'), ('acknowledged', 'Acknowledged'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed')], default='pending', max_length=20)),
                    ('attempts', models.PositiveIntegerField(default=0, help_text='Times delivered')),
                    ('progress', models.JSONField(blank=True, null=True)),
                    ('result', models.JSONField(blank=True, null=True)),
                    ('error', models.TextField(blank=True)),
                    ('actor', models.CharField(max_length=150)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                    ('delivered_at', models.DateTimeField(blank=True, null=True)),
                    ('acknowledged_at', models.DateTimeField(blank=True, null=True)),
                    ('finished_at', models.DateTimeField(blank=True, null=True)),
                    ('instance', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='commands', to='instances.instance')),
                ],
                options={
                    'db_table': 'instances_agentcommand',
                    'ordering': ['created_at'],
                    'indexes': [models.Index(fields=['instance', 'status'], name='instances_a_instanc_280a9a_idx')],
                },
            ),
            migrations.CreateModel(
                name='AgentSample',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('slot', models.PositiveIntegerField()),
                    ('at', models.DateTimeField()),
                    ('gpu_util_max', models.FloatField(help_text='Busiest GPU, % over the interval; null on error', null=True)),
                    ('gpu_error', models.TextField(blank=True)),
                    ('ssh_sessions', models.PositiveIntegerField(default=0)),
                    ('last_input_age_s', models.FloatField(null=True)),
                    ('jupyter_busy_kernels', models.PositiveIntegerField(null=True)),
                    ('cpu_percent', models.FloatField(default=0)),
                    ('data', models.JSONField(help_text='The whole sample, as sent')),
                    ('instance', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='samples', to='instances.instance')),
                ],
                options={
                    'db_table': 'instances_agentsample',
                    'indexes': [models.Index(fields=['instance', 'at'], name='instances_a_instanc_957f7f_idx')],
                    'constraints': [models.UniqueConstraint(fields=('instance', 'slot'), name='agent_sample_ring_slot')],
                },
            ),
        ]),
    ]
