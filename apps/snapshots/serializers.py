from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from . import selectors
from .models import Snapshot


class SnapshotProgressSerializer(serializers.Serializer):
    command_status = serializers.CharField()
    phase = serializers.CharField(required=False)
    bytes = serializers.IntegerField(required=False)
    total_bytes = serializers.IntegerField(required=False)
    files = serializers.IntegerField(required=False)
    total_files = serializers.IntegerField(required=False)
    bytes_per_s = serializers.IntegerField(required=False)
    eta_s = serializers.FloatField(required=False, allow_null=True)
    percent = serializers.FloatField(allow_null=True)


class SnapshotSerializer(serializers.ModelSerializer):
    instance = serializers.UUIDField(source="instance_id", read_only=True)
    verified = serializers.BooleanField(read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Snapshot
        fields = [
            "id", "instance", "status", "trigger", "engine_id", "created_at", "finished_at", "files", "bytes",
            "stored_bytes", "new_bytes", "uploaded_bytes", "duration_s", "verified", "verified_at",
            "verify_error", "error", "progress",
        ]
        read_only_fields = fields

    @extend_schema_field(SnapshotProgressSerializer(allow_null=True))
    def get_progress(self, snapshot: Snapshot) -> dict | None:
        return selectors.snapshot_progress(snapshot)
