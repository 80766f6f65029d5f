"""REST API for instances. Views validate, call one service, render; 202 means 'work queued'."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.hibernation import services as hibernation_services
from apps.instances import selectors, services
from apps.instances.idempotency import idempotent
from apps.instances.models import InstanceStatus
from dumont.api import ERRORS, IDEMPOTENCY_HEADER, ErrorSerializer, StrictLimitOffsetPagination, actor_of

from .serializers import (
    IdlePolicySerializer,
    InstanceCreateSerializer,
    InstanceDetailSerializer,
    InstanceSerializer,
)


class InstanceListCreate(APIView):
    pagination_class = StrictLimitOffsetPagination

    @extend_schema(
        operation_id="instances_list",
        parameters=[OpenApiParameter("status", OpenApiTypes.STR, enum=InstanceStatus.values)],
        responses={200: InstanceSerializer(many=True), 400: ErrorSerializer, 401: ErrorSerializer},
    )
    def get(self, request):
        instances = selectors.instance_list(user=request.user, status=request.query_params.get("status"))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(instances, request, view=self)
        return paginator.get_paginated_response(InstanceSerializer(page, many=True).data)

    @extend_schema(
        operation_id="instances_create",
        request=InstanceCreateSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={202: InstanceSerializer, **ERRORS, 409: ErrorSerializer},
        description="Rent a GPU machine. Returns at once (202); follow `status` on the instance.",
    )
    def post(self, request):
        form = InstanceCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)

        def create():
            instance = services.instance_create(user=request.user, actor=actor_of(request), **form.validated_data)
            return status.HTTP_202_ACCEPTED, InstanceSerializer(instance).data

        code, body, replayed = idempotent(
            user=request.user,
            scope="instances.create",
            key=request.headers.get("Idempotency-Key"),
            payload=request.data,
            perform=create,
        )
        return Response(body, status=code, headers={"Idempotent-Replayed": "true"} if replayed else None)


class InstanceDetail(APIView):
    @extend_schema(operation_id="instances_retrieve", responses={200: InstanceDetailSerializer, **ERRORS})
    def get(self, request, instance_id):
        instance = selectors.instance_get(user=request.user, instance_id=instance_id)
        return Response(InstanceDetailSerializer(instance).data)

    @extend_schema(
        operation_id="instances_partial_update",
        request=IdlePolicySerializer,
        responses={200: InstanceSerializer, **ERRORS},
        description="Change the instance's idle policy: auto_hibernate, idle_gpu_threshold (%), idle_window_s, "
                    "idle_signals (ssh_input, jupyter, cpu) and keep_awake_until. null goes back to the "
                    "global setting.",
    )
    def patch(self, request, instance_id):
        instance = selectors.instance_get(user=request.user, instance_id=instance_id)
        form = IdlePolicySerializer(data=request.data)
        form.is_valid(raise_exception=True)
        instance = hibernation_services.instance_set_idle_policy(
            instance=instance, actor=actor_of(request), **form.validated_data)
        return Response(InstanceSerializer(instance).data)

    @extend_schema(
        operation_id="instances_destroy",
        responses={202: InstanceSerializer, **ERRORS},
        description="Destroy the machine for good. 409 once the instance is already destroyed.",
    )
    def delete(self, request, instance_id):
        instance = selectors.instance_get(user=request.user, instance_id=instance_id)
        instance = services.instance_destroy(instance=instance, actor=actor_of(request))
        return Response(InstanceSerializer(instance).data, status=status.HTTP_202_ACCEPTED)


def _action_view(service, operation_id: str, description: str):
    class ActionView(APIView):
        @extend_schema(
            operation_id=operation_id, request=None,
            responses={202: InstanceSerializer, **ERRORS}, description=description,
        )
        def post(self, request, instance_id):
            instance = selectors.instance_get(user=request.user, instance_id=instance_id)
            instance = service(instance=instance, actor=actor_of(request))
            return Response(InstanceSerializer(instance).data, status=status.HTTP_202_ACCEPTED)

    ActionView.__name__ = ActionView.__qualname__ = f"{operation_id.title().replace('_', '')}View"
    return ActionView.as_view()


class InstanceWake(APIView):
    @extend_schema(
        operation_id="instances_wake", request=None, parameters=[IDEMPOTENCY_HEADER],
        responses={202: InstanceSerializer, **ERRORS},
        description="Bring the workspace back: a paused machine is started again (a race for a new one "
                    "if it does not come back in time); a hibernated one gets a new machine from a race "
                    "and its newest snapshot restored. Idempotent: waking or running instances are "
                    "answered as they are, a hibernating or stopping one wakes once that is done.",
    )
    def post(self, request, instance_id):
        instance = selectors.instance_get(user=request.user, instance_id=instance_id)

        def wake():
            woken = hibernation_services.instance_wake(instance=instance, actor=actor_of(request))
            return status.HTTP_202_ACCEPTED, InstanceSerializer(woken).data

        code, body, replayed = idempotent(
            user=request.user, scope=f"instances.wake:{instance.pk}", key=request.headers.get("Idempotency-Key"),
            payload={}, perform=wake,
        )
        return Response(body, status=code, headers={"Idempotent-Replayed": "true"} if replayed else None)


instance_pause = _action_view(
    services.instance_pause, "instances_pause", "Stop the machine, keeping its disk (running → paused)."
)
instance_resume = _action_view(
    services.instance_resume, "instances_resume", "Start the paused machine again (paused → running)."
)
