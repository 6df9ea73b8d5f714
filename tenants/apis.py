"""REST API v1 for tenancy: the caller, tenants, memberships, invitations, API keys, coverage, audit.

Every tenant endpoint derives from ``tenants.drf.TenantScopedViewSet`` (the tenant comes from the URL;
no access -> 404, too low a role -> 403). Writes go through ``tenants.services``; ``service_call()``
is the one place where their Django ValidationError / PermissionDenied become DRF 400 / 403.

Each viewset names the model its object kwarg points at in ``isolation_model`` (read by the
isolation matrix; DRF's own ``model`` attribute is the base viewset's queryset source).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.fields import get_error_detail
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from tenants import services
from tenants.auth import ApiKeyPrincipal
from tenants.drf import ScopedAPIMixin, TenantScopedViewSet
from tenants.models import (
    ApiAccess,
    ApiKey,
    AuditEvent,
    Coverage,
    CoverageMode,
    Invitation,
    Membership,
    Role,
    Tenant,
    User,
)
from tenants.schema import error_responses  # importing it also registers the API-key security scheme

JSON_ONLY = [JSONRenderer]


# --- helpers -------------------------------------------------------------------------------------
@contextmanager
def service_call() -> Iterator[None]:
    """Run a ``tenants.services`` write: ValidationError -> 400 with field errors, PermissionDenied -> 403."""
    try:
        yield
    except DjangoValidationError as exc:
        detail = get_error_detail(exc)
        if not isinstance(detail, dict):
            detail = {api_settings.NON_FIELD_ERRORS_KEY: detail}
        raise exceptions.ValidationError(detail) from exc
    except DjangoPermissionDenied as exc:
        raise exceptions.PermissionDenied(str(exc) or None) from exc


def acting_user(request) -> User | None:
    """The person acting, for services' ``acting_user`` / ``created_by``; None for an API key."""
    user = request.user
    return None if isinstance(user, ApiKeyPrincipal) else user


def choice_field(choices, noun: str, **kwargs) -> serializers.ChoiceField:
    """A ChoiceField whose error lists the valid values."""
    values = ", ".join(str(value) for value, _ in choices)
    return serializers.ChoiceField(
        choices=choices,
        error_messages={"invalid_choice": f'"{{input}}" is not a valid {noun}; choose one of: {values}.'},
        **kwargs,
    )


class RejectUnknownFieldsMixin:
    """Answer 400 for fields the endpoint does not accept, instead of silently ignoring them."""

    def validate(self, attrs):
        sent = self.initial_data.keys() if hasattr(self.initial_data, "keys") else []
        writable = sorted(name for name, field in self.fields.items() if not field.read_only)
        extra = sorted(set(sent) - set(writable))
        if extra:
            raise serializers.ValidationError(
                {name: f"This field cannot be set here; send only: {', '.join(writable)}." for name in extra}
            )
        return super().validate(attrs)


# --- serializers ---------------------------------------------------------------------------------
class TenantAccessSerializer(serializers.Serializer):
    slug = serializers.SlugField()
    name = serializers.CharField()
    role = choice_field(Role.choices, "role", help_text="Your role for this tenant.")
    via = serializers.CharField(help_text="`member` (own staff), `agency` (agency coverage) or `api_key`.")


class ApiKeySummarySerializer(serializers.Serializer):
    prefix = serializers.CharField()
    name = serializers.CharField()
    access = choice_field(ApiAccess.choices, "access level")


class MeSerializer(serializers.Serializer):
    principal = serializers.ChoiceField(choices=[("user", "User"), ("api_key", "API key")])
    email = serializers.EmailField(allow_null=True, help_text="The user's email; null for an API key.")
    name = serializers.CharField(help_text="The user's full name, or the API key's name.")
    api_key = ApiKeySummarySerializer(allow_null=True, help_text="The key in use, or null for a session.")
    tenants = TenantAccessSerializer(many=True, help_text="The tenants you can act for, with your role.")


class TenantSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = ["name", "slug", "timezone", "status", "greeting", "agent_notes", "created_at"]
        read_only_fields = ["slug", "status", "created_at"]
        extra_kwargs = {
            "timezone": {"help_text": "An IANA time zone name, e.g. America/New_York."},
            "name": {"error_messages": {"blank": "Enter the business name as callers know it."}},
        }

    def validate_name(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError("Enter the business name as callers know it.")
        return value

    def update(self, instance: Tenant, validated_data: dict) -> Tenant:
        with service_call():
            return services.tenant_update(
                tenant=instance, changes=validated_data, acting_user=acting_user(self.context["request"])
            )


class TenantListSerializer(TenantSerializer):
    role = choice_field(Role.choices, "role", source="access.role", read_only=True, help_text="Your role here.")
    via = serializers.CharField(source="access.via", read_only=True, help_text="`member`, `agency` or `api_key`.")

    class Meta(TenantSerializer.Meta):
        fields = [*TenantSerializer.Meta.fields, "role", "via"]


class MembershipSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email", read_only=True)
    name = serializers.CharField(source="user.full_name", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "email", "name", "role", "created_at"]
        read_only_fields = fields


class MembershipRoleSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    role = choice_field(Role.choices, "role")


class InvitationSerializer(serializers.ModelSerializer):
    invited_by = serializers.EmailField(source="invited_by.email", read_only=True, allow_null=True)

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "invited_by", "created_at", "expires_at"]  # never the token
        read_only_fields = fields


class InvitationCreateSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    email = serializers.EmailField()
    role = choice_field(Role.choices, "role", default=Role.AGENT)


class ApiKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["id", "prefix", "name", "access", "created_at", "last_used_at", "revoked_at"]  # never the hash
        read_only_fields = fields


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(
        source="raw_key",
        read_only=True,
        help_text="The full key, shown only in this response: store it now. Send it as `Authorization: Api-Key <key>`.",
    )

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


class ApiKeyCreateSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    name = serializers.CharField(max_length=80, allow_blank=True, help_text="So you can recognise the key later.")
    access = choice_field(ApiAccess.choices, "access level", default=ApiAccess.READ)


class CoverageSerializer(serializers.ModelSerializer):
    agency = serializers.CharField(source="agency.name", read_only=True)
    granted_by = serializers.EmailField(source="granted_by.email", read_only=True, allow_null=True)

    class Meta:
        model = Coverage
        fields = ["id", "agency", "mode", "active", "granted_by", "created_at", "revoked_at"]
        read_only_fields = fields


class CoverageGrantSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    invite_code = serializers.CharField(max_length=32, help_text="The agency's invite code (ask the agency).")
    mode = choice_field(CoverageMode.choices, "coverage mode", default=CoverageMode.AFTER_HOURS)


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.EmailField(source="actor.email", read_only=True, allow_null=True)

    class Meta:
        model = AuditEvent
        fields = ["id", "action", "detail", "actor", "created_at"]
        read_only_fields = fields


# --- views ---------------------------------------------------------------------------------------
@extend_schema(tags=["me"])
class MeView(ScopedAPIMixin, APIView):
    """The caller and the tenants they can act for."""

    renderer_classes = JSON_ONLY

    @extend_schema(responses={200: MeSerializer, **error_responses()})
    def get(self, request):
        tenants = [
            {"slug": a.slug, "name": a.name, "role": a.role, "via": a.via}
            for a in sorted(self.access_map.values(), key=lambda a: a.name)
        ]
        principal = request.user
        if isinstance(principal, ApiKeyPrincipal):
            key = principal.api_key
            data = {
                "principal": "api_key",
                "email": None,
                "name": key.name,
                "api_key": {"prefix": key.prefix, "name": key.name, "access": key.access},
                "tenants": tenants,
            }
        else:
            data = {
                "principal": "user",
                "email": principal.email,
                "name": principal.full_name,
                "api_key": None,
                "tenants": tenants,
            }
        return Response(MeSerializer(data).data)


@extend_schema(tags=["tenants"])
class TenantListViewSet(ScopedAPIMixin, viewsets.GenericViewSet):
    """Tenants the caller can act for (an API key: its own tenant)."""

    isolation_model = Tenant
    serializer_class = TenantListSerializer
    renderer_classes = JSON_ONLY

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Tenant.objects.none()
        return Tenant.objects.filter(id__in=list(self.access_map)).order_by("name", "id")

    @extend_schema(responses={200: TenantListSerializer(many=True), **error_responses()})
    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        for tenant in page:
            tenant.access = self.access_map[tenant.id]
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


@extend_schema(tags=["tenants"])
class TenantDetailViewSet(TenantScopedViewSet):
    """One tenant's settings. Anyone who can act for it may read; admins may change them."""

    model = Tenant
    isolation_model = Tenant
    serializer_class = TenantSerializer
    renderer_classes = JSON_ONLY
    read_role = Role.AGENT
    write_role = Role.ADMIN

    @extend_schema(responses={200: TenantSerializer, **error_responses(404)})
    def retrieve(self, request, tenant_slug: str):
        return Response(self.get_serializer(self.tenant).data)

    @extend_schema(request=TenantSerializer, responses={200: TenantSerializer, **error_responses(400, 403, 404)})
    def partial_update(self, request, tenant_slug: str):
        serializer = self.get_serializer(self.tenant, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(serializer.data)


_LIST_ERRORS = error_responses(403, 404)
_DELETED = {204: OpenApiResponse(description="Done; no body."), **error_responses(400, 403, 404)}


@extend_schema(tags=["memberships"])
@extend_schema_view(list=extend_schema(responses={200: MembershipSerializer(many=True), **_LIST_ERRORS}))
class MembershipViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """The tenant's own staff. Agents may read; admins change roles and remove people (owner rules apply)."""

    model = Membership
    isolation_model = Membership
    serializer_class = MembershipSerializer
    renderer_classes = JSON_ONLY
    read_role = Role.AGENT
    write_role = Role.ADMIN

    def filter_for_tenant(self, queryset):
        return queryset.select_related("user").order_by("user__email", "id")

    @extend_schema(responses={200: MembershipSerializer, **error_responses(404)})
    def retrieve(self, request, tenant_slug: str, pk: int):
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        request=MembershipRoleSerializer,
        responses={200: MembershipSerializer, **error_responses(400, 403, 404)},
        description="Change a member's role. Only an owner may make someone an owner or change an owner's role; "
        "the last owner cannot be demoted.",
    )
    def partial_update(self, request, tenant_slug: str, pk: int):
        membership = self.get_object()
        serializer = MembershipRoleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with service_call():
            services.membership_update_role(
                membership=membership, role=serializer.validated_data["role"], acting_user=acting_user(request)
            )
        return Response(self.get_serializer(membership).data)

    @extend_schema(
        responses=_DELETED,
        description="Remove a member. Only an owner may remove an owner; the last owner cannot be removed.",
    )
    def destroy(self, request, tenant_slug: str, pk: int):
        membership = self.get_object()
        with service_call():
            services.membership_remove(membership=membership, acting_user=acting_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["invitations"])
@extend_schema_view(list=extend_schema(responses={200: InvitationSerializer(many=True), **_LIST_ERRORS}))
class InvitationViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """Pending invitations to join the tenant (admins). The invitation token is never returned."""

    model = Invitation
    isolation_model = Invitation
    serializer_class = InvitationSerializer
    renderer_classes = JSON_ONLY
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    def filter_for_tenant(self, queryset):
        return (
            queryset.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now())
            .select_related("invited_by")
            .order_by("-created_at", "-id")
        )

    @extend_schema(responses={200: InvitationSerializer, **error_responses(403, 404)})
    def retrieve(self, request, tenant_slug: str, pk: int):
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        request=InvitationCreateSerializer,
        responses={201: InvitationSerializer, **error_responses(400, 403, 404)},
        description="Invite someone by email; the email with the link goes out once saved. "
        "A new invitation replaces a pending one for the same address. Only an owner may invite an owner.",
    )
    def create(self, request, tenant_slug: str):
        serializer = InvitationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with service_call():
            invitation = services.invitation_create(
                email=serializer.validated_data["email"],
                role=serializer.validated_data["role"],
                invited_by=acting_user(request),
                tenant=self.tenant,
            )
        return Response(self.get_serializer(invitation).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=_DELETED, description="Revoke a pending invitation; its link stops working.")
    def destroy(self, request, tenant_slug: str, pk: int):
        invitation = self.get_object()
        with service_call():
            services.invitation_revoke(invitation=invitation, revoked_by=acting_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["api-keys"])
@extend_schema_view(list=extend_schema(responses={200: ApiKeySerializer(many=True), **_LIST_ERRORS}))
class ApiKeyViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """The tenant's API keys (admins), revoked ones included. Never the key or its hash, except once on create."""

    model = ApiKey
    isolation_model = ApiKey
    serializer_class = ApiKeySerializer
    renderer_classes = JSON_ONLY
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    def filter_for_tenant(self, queryset):
        return queryset.order_by("-created_at", "-id")

    @extend_schema(responses={200: ApiKeySerializer, **error_responses(403, 404)})
    def retrieve(self, request, tenant_slug: str, pk: int):
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        request=ApiKeyCreateSerializer,
        responses={201: ApiKeyCreatedSerializer, **error_responses(400, 403, 404)},
        description="Create a key. The response's `key` is the only time the full key is shown: store it now.",
    )
    def create(self, request, tenant_slug: str):
        serializer = ApiKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with service_call():
            api_key, raw = services.api_key_create(
                tenant=self.tenant,
                name=serializer.validated_data["name"],
                access=serializer.validated_data["access"],
                created_by=acting_user(request),
            )
        api_key.raw_key = raw
        return Response(ApiKeyCreatedSerializer(api_key).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=_DELETED, description="Revoke a key; requests with it answer 401 from now on.")
    def destroy(self, request, tenant_slug: str, pk: int):
        api_key = self.get_object()
        with service_call():
            services.api_key_revoke(api_key=api_key, revoked_by=acting_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["coverage"])
@extend_schema_view(list=extend_schema(responses={200: CoverageSerializer(many=True), **_LIST_ERRORS}))
class CoverageViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """Agencies that staff this tenant. Admins may read; only owners grant or revoke."""

    model = Coverage
    isolation_model = Coverage
    serializer_class = CoverageSerializer
    renderer_classes = JSON_ONLY
    read_role = Role.ADMIN
    write_role = Role.OWNER

    def filter_for_tenant(self, queryset):
        return queryset.select_related("agency", "granted_by").order_by("-created_at", "-id")

    @extend_schema(responses={200: CoverageSerializer, **error_responses(403, 404)})
    def retrieve(self, request, tenant_slug: str, pk: int):
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(
        request=CoverageGrantSerializer,
        responses={201: CoverageSerializer, **error_responses(400, 403, 404)},
        description="Let an agency staff this business, identified by its invite code. Granting again "
        "re-activates revoked coverage and updates the mode.",
    )
    def create(self, request, tenant_slug: str):
        serializer = CoverageGrantSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with service_call():
            coverage = services.coverage_grant(
                tenant=self.tenant,
                invite_code=serializer.validated_data["invite_code"],
                mode=serializer.validated_data["mode"],
                granted_by=acting_user(request),
            )
        return Response(self.get_serializer(coverage).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        responses=_DELETED,
        description="Revoke coverage; the agency's agents lose access at once. "
        "The row is kept (active=false) for the record.",
    )
    def destroy(self, request, tenant_slug: str, pk: int):
        coverage = self.get_object()
        if coverage.active:
            with service_call():
                services.coverage_revoke(coverage=coverage, revoked_by=acting_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["audit"])
@extend_schema_view(list=extend_schema(responses={200: AuditEventSerializer(many=True), **_LIST_ERRORS}))
class AuditEventViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """Who changed access to this tenant, newest first (admins)."""

    model = AuditEvent
    isolation_model = AuditEvent
    serializer_class = AuditEventSerializer
    renderer_classes = JSON_ONLY
    read_role = Role.ADMIN
    write_role = Role.OWNER

    def filter_for_tenant(self, queryset):
        return queryset.select_related("actor").order_by("-created_at", "-id")
