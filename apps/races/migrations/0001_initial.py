"""Race, RaceCandidate and StrayMachine move here from apps.instances. Their tables keep their
names (instances_race, ...): only Django's state changes, no row or column is touched.
"""

import django.db.models.deletion
import django.utils.timezone
import uuid
from decimal import Decimal
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('instances', '0004_hibernation'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.CreateModel(
                name='Race',
                fields=[
                    ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                    ('purpose', models.CharField(choices=[('create', 'Create'), ('wake', 'Wake')], max_length=10)),
                    ('status', models.CharField(choices=[('running', 'Running'), ('won', 'Won'), ('failed', 'Failed'), ('cancelled', 'cancelled (the instance moved on)')], default='running', max_length=10)),
                    ('result', models.TextField(blank=True, help_text='How it ended, in words.')),
                    ('batch_size', models.PositiveSmallIntegerField()),
                    ('max_rounds', models.PositiveSmallIntegerField()),
                    ('round_timeout_s', models.FloatField()),
                    ('round', models.PositiveSmallIntegerField(default=0, help_text='The round now running (1-based); 0 before the first.')),
                    ('round_deadline_at', models.DateTimeField(blank=True, null=True)),
                    ('deadline_at', models.DateTimeField(help_text='Past this the reconciler ends the race whatever state it is in.')),
                    ('lease_until', models.DateTimeField(blank=True, help_text='The worker driving the race renews this; an expired lease means it died.', null=True)),
                    ('claims', models.PositiveSmallIntegerField(default=0, help_text='Workers that took the race: more than one means a worker died and another resumed it.')),
                    ('started_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('ready_at', models.DateTimeField(blank=True, help_text="The winner's SSH handshake completed.", null=True)),
                    ('running_at', models.DateTimeField(blank=True, help_text='The instance was recorded running.', null=True)),
                    ('finished_at', models.DateTimeField(blank=True, null=True)),
                    ('cleaned_up_at', models.DateTimeField(blank=True, help_text='Every machine but the winner confirmed destroyed.', null=True)),
                    ('loser_seconds', models.FloatField(default=0, help_text='Billed seconds of every machine that did not win.')),
                    ('loser_cost', models.DecimalField(decimal_places=6, default=Decimal('0'), help_text='What those seconds cost, USD.', max_digits=12)),
                    ('instance', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='races', to='instances.instance')),
                ],
                options={
                    'db_table': 'instances_race',
                    'ordering': ['-started_at'],
                },
            ),
            migrations.CreateModel(
                name='RaceCandidate',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('round', models.PositiveSmallIntegerField()),
                    ('slot', models.PositiveSmallIntegerField()),
                    ('offer_id', models.CharField(max_length=50)),
                    ('host_id', models.CharField(blank=True, help_text="The provider's physical machine.", max_length=50)),
                    ('gpu_name', models.CharField(blank=True, max_length=50)),
                    ('price_per_hour', models.DecimalField(decimal_places=4, max_digits=8)),
                    ('location', models.CharField(blank=True, max_length=100)),
                    ('label', models.CharField(blank=True, db_index=True, max_length=100)),
                    ('machine_id', models.CharField(blank=True, db_index=True, max_length=50)),
                    ('ssh_host', models.CharField(blank=True, max_length=255)),
                    ('ssh_port', models.PositiveIntegerField(blank=True, null=True)),
                    ('create_requested_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('created_at', models.DateTimeField(blank=True, help_text='The provider accepted the create.', null=True)),
                    ('running_at', models.DateTimeField(blank=True, help_text='The provider first said running.', null=True)),
                    ('ssh_ready_at', models.DateTimeField(blank=True, null=True)),
                    ('destroy_requested_at', models.DateTimeField(blank=True, null=True)),
                    ('destroyed_at', models.DateTimeField(blank=True, null=True)),
                    ('destroy_attempts', models.PositiveSmallIntegerField(default=0)),
                    ('outcome', models.CharField(blank=True, choices=[('', 'in the race'), ('won', 'Won'), ('lost', 'lost (another was ready first)'), ('timed_out', 'not ready before its round ended'), ('failed', 'Failed'), ('offer_gone', 'offer taken before we could rent it'), ('cancelled', 'race cancelled')], default='', max_length=20)),
                    ('error', models.TextField(blank=True)),
                    ('billed_seconds', models.FloatField(blank=True, null=True)),
                    ('cost', models.DecimalField(blank=True, decimal_places=6, max_digits=12, null=True)),
                    ('race', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='candidates', to='races.race')),
                ],
                options={
                    'db_table': 'instances_racecandidate',
                    'ordering': ['round', 'slot'],
                },
            ),
            migrations.AddField(
                model_name='race',
                name='winner',
                field=models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='won_race', to='races.racecandidate'),
            ),
            migrations.CreateModel(
                name='StrayMachine',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('provider', models.CharField(max_length=20)),
                    ('machine_id', models.CharField(max_length=50)),
                    ('label', models.CharField(max_length=100)),
                    ('reason', models.TextField()),
                    ('first_seen_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('destroyed_at', models.DateTimeField(blank=True, null=True)),
                    ('error', models.TextField(blank=True)),
                ],
                options={
                    'db_table': 'instances_straymachine',
                    'ordering': ['-first_seen_at'],
                    'constraints': [models.UniqueConstraint(fields=('provider', 'machine_id'), name='stray_machine_unique')],
                },
            ),
            migrations.AddConstraint(
                model_name='racecandidate',
                constraint=models.UniqueConstraint(fields=('race', 'round', 'slot'), name='race_candidate_slot'),
            ),
            migrations.AddIndex(
                model_name='race',
                index=models.Index(fields=['status', 'lease_until'], name='instances_r_status_f9afd6_idx'),
            ),
        ]),
    ]
