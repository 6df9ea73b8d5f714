"""Tenants, people and access.

Two kinds of tables live here:
- access tables (Tenant, Membership, Agency, AgencyMembership, Coverage, Invitation, ApiKey) are
  what the scope is computed *from*, so they are not scoped themselves; they are only read through
  ``tenants.selectors`` and always filtered by the acting user or tenant;
- ``TenantOwned`` is the base of every other tenant-owned row in the project: its default manager
  refuses to query outside a tenant scope (django-scopes), so a forgotten filter fails closed.
"""

from __future__ import annotations

import hashlib
import secrets
import zoneinfo
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify
from django_scopes import ScopedManager


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(
            f"{value!r} is not a time zone name; use an IANA name such as America/New_York or Europe/London."
        )


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    SUPERVISOR = "supervisor", "Supervisor"
    AGENT = "agent", "Agent"


ROLE_RANK = {Role.AGENT: 1, Role.SUPERVISOR: 2, Role.ADMIN: 3, Role.OWNER: 4}


def role_at_least(role: str | None, minimum: str) -> bool:
    return role is not None and ROLE_RANK[Role(role)] >= ROLE_RANK[Role(minimum)]


class AgencyRole(models.TextChoices):
    OWNER = "owner", "Owner"
    SUPERVISOR = "supervisor", "Supervisor"
    AGENT = "agent", "Agent"


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **extra) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self._create(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Logs in with an email address; what they may do comes from memberships."""

    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="Platform staff only; tenant admins do not need it.")
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return self.full_name or self.email

    def get_short_name(self) -> str:
        return self.full_name.split(" ")[0] if self.full_name else self.email.split("@")[0]


class TenantStatus(models.TextChoices):
    TRIAL = "trial", "Trial"
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Past due"
    SUSPENDED = "suspended", "Suspended"


def unique_slug(model: type[models.Model], name: str) -> str:
    base = slugify(name)[:40] or "business"
    slug, n = base, 2
    while model._base_manager.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


class Tenant(models.Model):
    """A business using Switchboard."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=50, unique=True)
    timezone = models.CharField(max_length=64, default="America/New_York", validators=[validate_timezone])
    status = models.CharField(max_length=16, choices=TenantStatus.choices, default=TenantStatus.TRIAL)
    greeting = models.CharField(
        max_length=200,
        blank=True,
        help_text="How agents answer for this business, e.g. 'Bright Smile Dental, this is Sam.'",
    )
    agent_notes = models.TextField(blank=True, help_text="Short notes shown to agents who answer for this business.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TenantOwned(models.Model):
    """Base of every tenant-owned row: a non-null tenant and a manager that fails closed.

    Queries through ``objects`` raise ``ScopeError`` outside ``tenants.scoping.tenant_scope``.
    ``clean()`` refuses a foreign key to another tenant's row, so the admin and forms cannot
    link across tenants even for a user who administers several.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", editable=True)

    objects = ScopedManager(tenant="tenant")

    class Meta:
        abstract = True

    def clean(self) -> None:
        super().clean()
        if not self.tenant_id:
            return
        for field in self._meta.concrete_fields:
            if not field.is_relation or field.name == "tenant":
                continue
            remote = field.related_model
            if not (isinstance(remote, type) and issubclass(remote, TenantOwned)):
                continue
            target_id = getattr(self, field.attname)
            if target_id is None:
                continue
            target_tenant = remote._base_manager.filter(pk=target_id).values_list("tenant_id", flat=True).first()
            if target_tenant is not None and target_tenant != self.tenant_id:
                raise ValidationError({field.name: f"Choose a {remote._meta.verbose_name} of the same business."})


class Membership(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.AGENT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique_user_tenant")]
        ordering = ["tenant__name", "user__email"]

    def __str__(self) -> str:
        return f"{self.user} - {self.tenant} ({self.role})"


def new_invite_code() -> str:
    return secrets.token_urlsafe(9).replace("-", "x").replace("_", "y")


class Agency(models.Model):
    """An outsourced answering service whose agents staff one console for many businesses."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=50, unique=True)
    invite_code = models.CharField(
        max_length=32,
        unique=True,
        default=new_invite_code,
        help_text="Give this code to a business so it can grant your agency coverage.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "agencies"

    def __str__(self) -> str:
        return self.name


class AgencyMembership(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="agency_memberships")
    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=AgencyRole.choices, default=AgencyRole.AGENT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "agency"], name="agencymembership_unique")]

    def __str__(self) -> str:
        return f"{self.user} - {self.agency} ({self.role})"


class CoverageMode(models.TextChoices):
    ALWAYS = "always", "Always"
    AFTER_HOURS = "after_hours", "After hours"
    OVERFLOW = "overflow", "Overflow"


class Coverage(models.Model):
    """An agency staffs a tenant. Revoking sets active=False (kept for the record)."""

    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="coverages")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="coverages")
    mode = models.CharField(max_length=16, choices=CoverageMode.choices, default=CoverageMode.AFTER_HOURS)
    active = models.BooleanField(default=True)
    granted_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["agency", "tenant"], name="coverage_unique_agency_tenant")]
        verbose_name_plural = "coverage"

    def __str__(self) -> str:
        return f"{self.agency} covers {self.tenant} ({self.get_mode_display()})"


def _token() -> str:
    return secrets.token_urlsafe(32)


def _invitation_expiry():
    return timezone.now() + timedelta(days=7)


class Invitation(models.Model):
    """An invitation to join a tenant (teammate) or an agency (agent). The token is the link's secret."""

    email = models.EmailField()
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="invitations")
    agency = models.ForeignKey(Agency, null=True, blank=True, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(max_length=16, default=Role.AGENT)
    token = models.CharField(max_length=64, unique=True, default=_token)
    invited_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(default=_invitation_expiry)
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(tenant__isnull=False, agency__isnull=True) | Q(tenant__isnull=True, agency__isnull=False)),
                name="invitation_tenant_xor_agency",
            )
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Invitation for {self.email} to {self.tenant or self.agency}"

    @property
    def is_pending(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > timezone.now()


class ApiAccess(models.TextChoices):
    READ = "read", "Read only"
    WRITE = "write", "Read and write"


def hash_api_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiKey(models.Model):
    """A tenant's API key. The full key is shown once; we keep its prefix and a SHA-256 hash."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=12, unique=True)
    hashed_key = models.CharField(max_length=64, unique=True)
    access = models.CharField(max_length=8, choices=ApiAccess.choices, default=ApiAccess.READ)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def role(self) -> str:
        return Role.ADMIN if self.access == ApiAccess.WRITE else Role.SUPERVISOR


class AuditEvent(TenantOwned):
    """Who changed access to a business, and when (invitations, roles, coverage, API keys)."""

    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=64)
    detail = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action}: {self.detail}"
