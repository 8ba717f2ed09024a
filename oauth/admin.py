from django.contrib import admin

from oauth.models import ApiToken, Membership, Organization


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin[Organization]):
    list_display = ["name", "slug", "created_at"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin[Membership]):
    list_display = ["user", "organization", "role"]
    list_filter = ["role", "organization"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin[ApiToken]):
    list_display = ["name", "prefix", "user", "organization", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "token_hash", "last_used_at"]
