"""The server-rendered team-admin UI. Organisation pages live under /o/<account_id>/ (the 32-hex id); object ids
in URLs are named so that the isolation tests can fill them (zone_id, member_id, invitation_id, token_id,
event_id, message_id)."""

from django.urls import include, path

from controlplane.ui.views import account, audit, auth, members, organisations, outbox, tokens, zones

app_name = "ui"

organisation_patterns = [
    path("", organisations.OverviewView.as_view(), name="overview"),
    path("settings/", organisations.SettingsView.as_view(), name="settings"),
    path("members/", members.MembersView.as_view(), name="members"),
    path("members/<str:member_id>/role/", members.MemberRoleView.as_view(), name="member-role"),
    path("members/<str:member_id>/remove/", members.MemberRemoveView.as_view(), name="member-remove"),
    path("invitations/<str:invitation_id>/revoke/", members.InvitationRevokeView.as_view(), name="invitation-revoke"),
    path("tokens/", tokens.TokenListView.as_view(), name="tokens"),
    path("tokens/new/", tokens.TokenCreateView.as_view(), name="token-create"),
    path("tokens/<str:token_id>/created/", tokens.TokenCreatedView.as_view(), name="token-created"),
    path("tokens/<str:token_id>/revoke/", tokens.TokenRevokeView.as_view(), name="token-revoke"),
    path("zones/", zones.ZoneListView.as_view(), name="zones"),
    path("zones/<str:zone_id>/", zones.ZoneDetailView.as_view(), name="zone"),
    path("zones/<str:zone_id>/check/", zones.ZoneCheckView.as_view(), name="zone-check"),
    path("zones/<str:zone_id>/delete/", zones.ZoneDeleteView.as_view(), name="zone-delete"),
    path("audit/", audit.AuditLogView.as_view(), name="audit"),
    path("audit/<str:event_id>/", audit.AuditEventView.as_view(), name="audit-event"),
    path("outbox/", outbox.OutboxListView.as_view(), name="outbox"),
    path("outbox/<str:message_id>/", outbox.OutboxMessageView.as_view(), name="outbox-message"),
    path("", include("tunnels.ui_urls")),
    path("", include("access.ui_urls")),
    path("", include("certificates.ui_urls")),
]

urlpatterns = [
    path("", auth.HomeView.as_view(), name="home"),
    path("login/", auth.LoginView.as_view(), name="login"),
    path("login/verify/", auth.VerifyView.as_view(), name="login-verify"),
    path("logout/", auth.LogoutView.as_view(), name="logout"),
    path("password-reset/", auth.PasswordResetView.as_view(), name="password-reset"),
    path("password-reset/sent/", auth.PasswordResetDoneView.as_view(), name="password-reset-done"),
    path("reset/<uidb64>/<token>/", auth.PasswordResetConfirmView.as_view(), name="password-reset-confirm"),
    path("reset/done/", auth.PasswordResetCompleteView.as_view(), name="password-reset-complete"),
    path("account/", account.AccountView.as_view(), name="account"),
    path("account/password/", account.PasswordChangeView.as_view(), name="password-change"),
    path("account/two-factor/", account.TwoFactorView.as_view(), name="two-factor"),
    path("account/two-factor/backup-codes/", account.BackupCodesView.as_view(), name="backup-codes"),
    path("account/two-factor/remove/", account.TwoFactorRemoveView.as_view(), name="two-factor-remove"),
    path("organisations/new/", organisations.OrganisationCreateView.as_view(), name="organisation-create"),
    path("invitations/<str:secret>/", members.InvitationLinkView.as_view(), name="invitation"),
    path("o/<str:account_id>/", include(organisation_patterns)),
]
