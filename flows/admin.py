"""Authoring scripts and routing in the tenant-scoped admin.

Flow pages edit the draft (steps, intents, FAQ); Check shows what Publish would refuse and what
would change; Publish freezes a version; Versions can be compared, rolled back to, or restored as
the draft; Export/Import move a flow as YAML; Simulate runs the draft or any version turn by turn.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from flows import services
from flows.definition import errors_only
from flows.forms import STEP_MODELS, BusinessHoursForm, ImportYamlForm, step_form_for
from flows.models import (
    BusinessHours,
    Closure,
    EscalationPolicy,
    Faq,
    Flow,
    FlowVersion,
    Holiday,
    Intent,
    Queue,
    Step,
)
from tenants.admin_site import TenantModelAdmin, writable_tenant_ids


class ObjectViewsMixin:
    """Extra per-object admin views, declared so the isolation matrix can probe each one.

    ``object_views``: (url suffix, "read" | "write"). Each view loads its object through
    get_object (404 for another tenant's) and checks view or change permission (403).
    """

    object_views: tuple[tuple[str, str], ...] = ()

    def load_for(self, request, object_id, need: str):
        obj = self.get_object(request, object_id)
        allowed = (
            self.has_change_permission(request, obj) if need == "write" else self.has_view_permission(request, obj)
        )
        if not allowed:
            raise PermissionDenied("Your role may view this but not change it.")
        return obj

    def object_url(self, name: str, obj) -> str:
        opts = self.model._meta
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_{name}", args=[obj.pk])


class ChildInline(admin.StackedInline):
    """Inline for a tenant-owned child of a flow: the tenant comes from the flow."""

    extra = 0

    def has_view_permission(self, request, obj=None):
        return self.parent_admin_has("view", request, obj)

    def has_change_permission(self, request, obj=None):
        return self.parent_admin_has("change", request, obj)

    def has_add_permission(self, request, obj=None):
        return self.parent_admin_has("change", request, obj)

    def has_delete_permission(self, request, obj=None):
        return self.parent_admin_has("change", request, obj)

    def parent_admin_has(self, what, request, obj):
        parent = self.admin_site._registry[Flow]
        return getattr(parent, f"has_{what}_permission")(request, obj)


class IntentInline(ChildInline):
    model = Intent
    fields = ("name", "description", "examples")


class FaqInline(ChildInline):
    model = Faq
    fields = ("key", "questions", "answer", "voice_answer")


class StepInline(ChildInline):
    model = Step
    template = "admin/edit_inline/tabular.html"
    fields = ("edit_link", "kind", "summary", "position")
    readonly_fields = ("edit_link", "kind", "summary")
    ordering = ("position", "id")

    def has_add_permission(self, request, obj=None):
        return False  # steps are added on their own page, with the settings of their kind

    @admin.display(description="Step")
    def edit_link(self, step):
        return format_html('<a href="{}">{}</a>', reverse("admin:flows_step_change", args=[step.pk]), step.key)

    @admin.display(description="Settings")
    def summary(self, step):
        config = step.config or {}
        text = config.get("text") or config.get("prompt") or config.get("queue") or ""
        targets = [f"{k} → {v}" for k, v in config.items() if k in ("next", "open", "closed", "on_fail") and v]
        return " · ".join(filter(None, [str(text)[:80], ", ".join(targets)]))


@admin.register(Flow)
class FlowAdmin(ObjectViewsMixin, TenantModelAdmin):
    list_display = ("name", "language", "live_version", "updated_at")
    search_fields = ("name",)
    fields = ("name", "description", "language", "voice_style", "start_step", "messages")
    inlines = (StepInline, IntentInline, FaqInline)
    change_form_template = "admin/flows/flow/change_form.html"
    object_views = (
        ("check", "read"),
        ("publish", "write"),
        ("simulate", "read"),
        ("export", "read"),
        ("import", "write"),
    )

    @admin.display(description="Live version")
    def live_version(self, flow):
        return f"v{flow.published_version.number}" if flow.published_version_id else "not published"

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/check/", wrap(self.check_view), name="flows_flow_check"),
            path("<path:object_id>/publish/", wrap(self.publish_view), name="flows_flow_publish"),
            path("<path:object_id>/simulate/", wrap(self.simulate_view), name="flows_flow_simulate"),
            path("<path:object_id>/export/", wrap(self.export_view), name="flows_flow_export"),
            path("<path:object_id>/import/", wrap(self.import_view), name="flows_flow_import"),
            path("import/", wrap(self.import_new_view), name="flows_flow_import_new"),
            *super().get_urls(),
        ]

    def save_formset(self, request, form, formset, change):
        for inline_form in formset.forms:
            if inline_form.instance.tenant_id is None:
                inline_form.instance.tenant_id = form.instance.tenant_id
        super().save_formset(request, form, formset, change)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        flow = self.get_object(request, object_id)
        extra_context["add_step_url"] = reverse("admin:flows_step_add") + f"?flow={flow.pk}"
        extra_context["versions_url"] = reverse("admin:flows_flowversion_changelist") + f"?flow__id__exact={flow.pk}"
        return super().change_view(request, object_id, form_url, extra_context)

    # --- check and publish -------------------------------------------------------------------
    def _report(self, request, flow, problems, *, title, status=200):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": flow,
            "title": title,
            "errors": errors_only(problems),
            "warnings": [p for p in problems if p.severity != "error"],
            "changes": services.draft_diff(flow) if not errors_only(problems) else [],
            "can_publish": self.has_change_permission(request, flow),
        }
        return TemplateResponse(request, "admin/flows/flow/report.html", context, status=status)

    def check_view(self, request, object_id):
        flow = self.load_for(request, object_id, "read")
        _, problems = services.flow_check(flow)
        return self._report(request, flow, problems, title=f"Check {flow.name}")

    def publish_view(self, request, object_id):
        flow = self.load_for(request, object_id, "write")
        if request.method != "POST":
            return redirect(self.object_url("check", flow))
        try:
            version = services.flow_publish(flow=flow, user=request.user, note=request.POST.get("note", ""))
        except services.PublishRefused as refused:
            messages.error(request, "Not published: fix the problems below first. Nothing was changed.")
            return self._report(request, flow, refused.problems, title=f"Publish {flow.name}", status=400)
        messages.success(
            request,
            f"Published {flow.name} v{version.number}; new calls use it now "
            f"(understanding trained in {version.train_seconds:.1f} s).",
        )
        return redirect(reverse("admin:flows_flow_change", args=[flow.pk]))

    # --- YAML ---------------------------------------------------------------------------------
    def export_view(self, request, object_id):
        flow = self.load_for(request, object_id, "read")
        response = HttpResponse(services.flow_export_yaml(flow), content_type="application/x-yaml; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{flow.name.lower().replace(" ", "-")}.yaml"'
        return response

    def _import(self, request, flow):
        form = ImportYamlForm(request.POST or None, request.FILES or None)
        import_errors: list[str] = []
        if request.method == "POST" and form.is_valid():
            tenant_ids = writable_tenant_ids(request)
            tenant = flow.tenant if flow else None
            if tenant is None:
                from tenants.models import Tenant

                chosen = request.POST.get("tenant") or (tenant_ids[0] if len(tenant_ids) == 1 else None)
                tenant = Tenant.objects.filter(pk=chosen, id__in=tenant_ids).first() if chosen else None
                if tenant is None and not request.user.is_superuser:
                    import_errors.append("Choose the business to import into.")
            if tenant is not None:
                try:
                    flow = services.flow_import_yaml(tenant=tenant, text=form.cleaned_data["yaml"], flow=flow)
                except services.ImportRefused as refused:
                    import_errors = refused.messages
                else:
                    messages.success(request, f"Imported into the draft of {flow.name}. Check it, then publish.")
                    return redirect(reverse("admin:flows_flow_change", args=[flow.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": flow,
            "title": f"Import YAML into {flow.name}" if flow else "Import a flow from YAML",
            "form": form,
            "import_errors": import_errors,
        }
        return TemplateResponse(request, "admin/flows/flow/import.html", context, status=400 if import_errors else 200)

    def import_view(self, request, object_id):
        return self._import(request, self.load_for(request, object_id, "write"))

    def import_new_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        return self._import(request, None)

    # --- simulator ----------------------------------------------------------------------------
    def simulate_view(self, request, object_id):
        from flows.simulator import simulator_page

        flow = self.load_for(request, object_id, "read")
        return simulator_page(self, request, flow)


@admin.register(Step)
class StepAdmin(TenantModelAdmin):
    list_display = ("key", "flow", "kind", "position")
    list_filter = ("flow", "kind")
    search_fields = ("key",)
    change_form_template = "admin/flows/step/change_form.html"

    def get_exclude(self, request, obj=None):
        return ["tenant", "config"]

    def _kind(self, request, obj) -> str:
        kind = request.POST.get("kind") or request.GET.get("kind") or (obj.kind if obj else "say")
        return kind if kind in STEP_MODELS else "say"

    def get_form(self, request, obj=None, change=False, **kwargs):
        form_class = step_form_for(self._kind(request, obj))
        kwargs["form"] = form_class
        kwargs["fields"] = ["flow", "key", "kind", "position", *(f"setting_{n}" for n in form_class.setting_names)]
        return admin.ModelAdmin.get_form(self, request, obj, change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        form_class = step_form_for(self._kind(request, obj))
        return [
            (None, {"fields": ["flow", "key", "kind", "position"]}),
            (
                f"Settings for a {form_class.step_kind.replace('_', ' ')} step",
                {"fields": [f"setting_{n}" for n in form_class.setting_names]},
            ),
        ]

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("kind", self._kind(request, None))
        return initial

    def save_model(self, request, obj, form, change):
        obj.tenant_id = obj.flow.tenant_id
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        if "_continue" not in request.POST and "_addanother" not in request.POST:
            return redirect(reverse("admin:flows_flow_change", args=[obj.flow_id]))
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request, obj):
        if "_continue" not in request.POST and "_addanother" not in request.POST:
            messages.success(request, f"Saved step {obj.key}. Publish the flow to put it live.")
            return redirect(reverse("admin:flows_flow_change", args=[obj.flow_id]))
        return super().response_change(request, obj)


@admin.register(FlowVersion)
class FlowVersionAdmin(ObjectViewsMixin, TenantModelAdmin):
    list_display = ("__str__", "note", "created_by", "created_at", "is_live")
    list_filter = ("flow",)
    fields = ("flow", "number", "note", "created_by", "created_at", "train_seconds", "changes", "yaml")
    readonly_fields = fields
    change_form_template = "admin/flows/flowversion/change_form.html"
    object_views = (("rollback", "write"), ("restore", "write"))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # versions are immutable; rollback and restore have their own checks

    def has_delete_permission(self, request, obj=None):
        return False

    def _may_write(self, request, version) -> bool:
        return TenantModelAdmin.has_change_permission(self, request, version)

    def load_for(self, request, object_id, need):
        version = self.get_object(request, object_id)
        if need == "write" and not self._may_write(request, version):
            raise PermissionDenied("Your role may view versions but not roll back or restore them.")
        if not self.has_view_permission(request, version):
            raise PermissionDenied
        return version

    @admin.display(boolean=True, description="Live")
    def is_live(self, version):
        return version.flow.published_version_id == version.pk

    @admin.display(description="Changes from the previous version")
    def changes(self, version):
        previous = (
            FlowVersion.objects.filter(flow_id=version.flow_id, number__lt=version.number).order_by("-number").first()
        )
        if previous is None:
            return "First version."
        items = services.version_diff(previous, version) or ["No changes."]
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((i,) for i in items)))

    @admin.display(description="Definition (YAML)")
    def yaml(self, version):
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", services.version_export_yaml(version))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        version = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "may_write": self._may_write(request, version),
            "is_live": self.is_live(version),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/rollback/", wrap(self.rollback_view), name="flows_flowversion_rollback"),
            path("<path:object_id>/restore/", wrap(self.restore_view), name="flows_flowversion_restore"),
            *super().get_urls(),
        ]

    def rollback_view(self, request, object_id):
        version = self.load_for(request, object_id, "write")
        if request.method != "POST":
            return redirect(reverse("admin:flows_flowversion_change", args=[version.pk]))
        new = services.flow_rollback(flow=version.flow, version=version, user=request.user)
        messages.success(
            request, f"{version.flow.name} is back to v{version.number}'s script, live now as v{new.number}."
        )
        return redirect(reverse("admin:flows_flow_change", args=[version.flow_id]))

    def restore_view(self, request, object_id):
        version = self.load_for(request, object_id, "write")
        if request.method != "POST":
            return redirect(reverse("admin:flows_flowversion_change", args=[version.pk]))
        services.flow_restore_draft(flow=version.flow, version=version)
        messages.success(request, f"The draft now matches v{version.number}. Edit it and publish when ready.")
        return redirect(reverse("admin:flows_flow_change", args=[version.flow_id]))


@admin.register(Queue)
class QueueAdmin(TenantModelAdmin):
    list_display = ("name", "priority", "routing_mode", "service_level_seconds", "max_wait_seconds")
    search_fields = ("name",)


@admin.register(BusinessHours)
class BusinessHoursAdmin(TenantModelAdmin):
    form = BusinessHoursForm
    list_display = ("__str__", "summary", "updated_at")

    def get_fieldsets(self, request, obj=None):
        days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        fields = days if "tenant" in self.get_exclude(request, obj) else ["tenant", *days]
        return [
            (
                None,
                {
                    "fields": fields,
                    "description": "Opening hours in the business's time zone. "
                    "Split shifts: 08:00-12:00, 13:00-17:00. Holidays and closures have their own pages.",
                },
            )
        ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["fields"] = [f for _, opts in self.get_fieldsets(request, obj) for f in opts["fields"]]
        return super().get_form(request, obj, change, **kwargs)

    @admin.display(description="Week")
    def summary(self, hours):
        return "; ".join(f"{day} {', '.join(f'{a}-{b}' for a, b in ivs)}" for day, ivs in (hours.weekly or {}).items())


@admin.register(Holiday)
class HolidayAdmin(TenantModelAdmin):
    list_display = ("date", "name")


@admin.register(Closure)
class ClosureAdmin(TenantModelAdmin):
    list_display = ("start", "end", "reason")


@admin.register(EscalationPolicy)
class EscalationPolicyAdmin(TenantModelAdmin):
    list_display = ("__str__", "default_queue", "max_misunderstandings", "frustration")
