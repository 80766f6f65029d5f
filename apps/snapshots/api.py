"""REST API for snapshots: list, detail, delete, and asking an instance for a new one."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.instances.idempotency import idempotent
from apps.instances.selectors import instance_get
from dumont.api import ERRORS, IDEMPOTENCY_HEADER, StrictLimitOffsetPagination, actor_of

from . import selectors, services
from .models import SnapshotStatus
from .serializers import SnapshotSerializer


class SnapshotList(APIView):
    pagination_class = StrictLimitOffsetPagination

    @extend_schema(
        operation_id="snapshots_list",
        parameters=[
            OpenApiParameter("instance", OpenApiTypes.UUID, description="Only this instance's snapshots."),
            OpenApiParameter("status", OpenApiTypes.STR, enum=SnapshotStatus.values),
        ],
        responses={200: SnapshotSerializer(many=True), **ERRORS},
    )
    def get(self, request):
        snapshots = selectors.snapshot_list(user=request.user, instance_id=request.query_params.get("instance"),
                                            status=request.query_params.get("status"))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(snapshots, request, view=self)
        return paginator.get_paginated_response(SnapshotSerializer(page, many=True).data)


class SnapshotDetail(APIView):
    @extend_schema(operation_id="snapshots_retrieve", responses={200: SnapshotSerializer, **ERRORS})
    def get(self, request, snapshot_id):
        return Response(SnapshotSerializer(selectors.snapshot_get(user=request.user, snapshot_id=snapshot_id)).data)

    @extend_schema(
        operation_id="snapshots_destroy",
        responses={202: SnapshotSerializer, 204: None, **ERRORS},
        description="Delete a snapshot: 202 while its manifest is removed from storage (its data is "
                    "freed by garbage collection), 204 for a failed one. 409 while it is being written, "
                    "or when it is the only copy of a stopped instance's workspace.",
    )
    def delete(self, request, snapshot_id):
        snapshot = selectors.snapshot_get(user=request.user, snapshot_id=snapshot_id)
        snapshot = services.snapshot_delete(snapshot=snapshot, actor=actor_of(request))
        if snapshot.pk is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(SnapshotSerializer(snapshot).data, status=status.HTTP_202_ACCEPTED)


class InstanceSnapshot(APIView):
    @extend_schema(
        operation_id="instances_snapshot",
        request=None,
        parameters=[IDEMPOTENCY_HEADER],
        responses={202: SnapshotSerializer, **ERRORS},
        description="Ask the instance's agent to snapshot its workspace now. 202 with the pending "
                    "snapshot; follow its `status` and `progress`. 409 unless the instance is running "
                    "with a healthy agent, or while another snapshot of it is under way.",
    )
    def post(self, request, instance_id):
        instance = instance_get(user=request.user, instance_id=instance_id)

        def perform():
            snapshot = services.snapshot_request(instance=instance, actor=actor_of(request))
            return status.HTTP_202_ACCEPTED, SnapshotSerializer(snapshot).data

        code, body, replayed = idempotent(
            user=request.user, scope=f"instances.snapshot:{instance.pk}",
            key=request.headers.get("Idempotency-Key"), payload={}, perform=perform,
        )
        return Response(body, status=code, headers={"Idempotent-Replayed": "true"} if replayed else None)
