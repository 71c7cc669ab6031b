"""The one scoping mechanism for organisation-owned rows.

Every organisation-owned model inherits `OrgOwnedModel`. Its default manager returns an `OrgQuerySet` that
refuses to run unless the query is tied to organisations: through `.for_org(org)` / `.for_orgs(orgs)`, an
equality/IN with plain values on the model's *own* `organisation` column (a joined table's organisation says
nothing about this table's rows), a related manager of a parent row that is itself organisation-owned, or an
explicit, named `.unscoped(reason)` for installation-wide work (global uniqueness checks, the edge's routing
table). Forgetting the scope is therefore an exception in the first test that touches the code path, not a leak
in production. Writes are checked too: `bulk_create` and `create` refuse a row without an organisation (unless the
model declares its installation-level rows) or, through a scoped queryset, a row of another organisation.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Self

from django.db import models
from django.db.models.expressions import Value
from django.db.models.lookups import Exact, In

if TYPE_CHECKING:
    from controlplane.models import Organisation

_system_scope: contextvars.ContextVar[str | None] = contextvars.ContextVar("system_scope", default=None)


class UnscopedQueryError(RuntimeError):
    """An organisation-owned table was queried without saying which organisations it is for."""


class OrganisationMismatch(ValueError):
    """A row written without an organisation, or into another organisation than the queryset is scoped to."""


@contextlib.contextmanager
def system_scope(reason: str) -> Iterator[None]:
    """Allow unscoped queries inside the block (framework internals such as uniqueness validation)."""
    token = _system_scope.set(reason)
    try:
        yield
    finally:
        _system_scope.reset(token)


def _is_plain_value(rhs: Any) -> bool:
    """A literal (or a list of literals): never a column, an expression or a subquery, which could match every
    organisation (`organisation=F("organisation")`, `organisation__in=Organisation.objects.all()`)."""
    if isinstance(rhs, Value):
        return True
    if isinstance(rhs, (list, tuple, set, frozenset)):
        return all(_is_plain_value(item) for item in rhs)
    return not hasattr(rhs, "resolve_expression") and not hasattr(rhs, "as_sql")


def _where_filters_organisation(where: Any, column: str, alias: str | None) -> bool:
    """True when the WHERE tree ANDs in an equality/IN with plain values on the organisation column of the
    query's own table (`alias`), not of a joined one."""
    if getattr(where, "connector", "AND") != "AND" or getattr(where, "negated", False):
        return False
    for child in getattr(where, "children", []):
        if isinstance(child, (Exact, In)):
            target = getattr(child.lhs, "target", None)
            if (
                target is not None
                and target.column == column
                and getattr(child.lhs, "alias", None) == alias
                and _is_plain_value(child.rhs)
            ):
                return True
        elif hasattr(child, "children") and _where_filters_organisation(child, column, alias):
            return True
    return False


def check_row_organisation(model: type[models.Model], org_id: Any, scope_org_ids: frozenset[Any] | None) -> None:
    """A row written into an organisation-owned table: it has an organisation (unless the model declares
    installation-level rows and the write is not scoped), one of `scope_org_ids` when the write is scoped."""
    if org_id is None:
        if getattr(model, "installation_level_rows", "") and scope_org_ids is None:
            return
        raise OrganisationMismatch(f"A {model.__name__} row needs an organisation.")
    if scope_org_ids is not None and org_id not in scope_org_ids:
        raise OrganisationMismatch(
            f"A {model.__name__} row of organisation {org_id} written through a queryset scoped to other organisations."
        )


class OrgQuerySet(models.QuerySet):
    _scope_reason: str | None = None
    _scope_org_ids: frozenset[Any] | None = None  # set by for_orgs(): the organisations writes must stay in

    def for_org(self, organisation: Organisation) -> Self:
        return self.for_orgs([organisation])

    def for_orgs(self, organisations: Iterable[Organisation]) -> Self:
        organisations = list(organisations)
        ids = [org.pk for org in organisations]
        qs = self.filter(organisation_id__in=ids) if len(ids) != 1 else self.filter(organisation_id=ids[0])
        qs._scope_reason = "organisation"
        qs._scope_org_ids = frozenset(ids)
        # The rows read come with the organisation the caller already holds (as a related manager's rows come with
        # their parent): `row.organisation` costs no query. Without this an API request read its organisation
        # again for each row it handed on (tunnel_health, every service's locked re-read): issue 13.
        field = self.model._meta.get_field("organisation")
        qs._known_related_objects = {**qs._known_related_objects, field: {org.pk: org for org in organisations}}
        return qs

    def installation_level(self) -> Self:
        """The rows that belong to no organisation, of a model that declares them (`installation_level_rows`)."""
        if not getattr(self.model, "installation_level_rows", ""):
            raise TypeError(f"{self.model.__name__} has no installation-level rows")
        return self.filter(organisation__isnull=True).unscoped(self.model.installation_level_rows)

    def unscoped(self, reason: str) -> Self:
        """Installation-wide access; `reason` documents why at the call site."""
        if not reason:
            raise ValueError("unscoped() needs a reason")
        qs = self._chain()
        qs._scope_reason = reason
        return qs

    def _clone(self) -> Self:
        clone = super()._clone()
        clone._scope_reason = self._scope_reason
        clone._scope_org_ids = self._scope_org_ids
        return clone

    def _check_scoped(self) -> None:
        if self._scope_reason or _system_scope.get():
            return
        if isinstance(self._hints.get("instance"), OrgOwnedModel):
            # A related manager of an organisation-owned parent (zone.dns_records): the parent was reached through
            # its scope, and child rows carry the parent's organisation. A parent outside any organisation (a
            # user's memberships) scopes nothing: those say .for_org() or .unscoped("why").
            return
        column = self.model._meta.get_field("organisation").column
        if _where_filters_organisation(self.query.where, column, self.query.get_initial_alias()):
            return
        raise UnscopedQueryError(
            f"{self.model.__name__} is organisation-owned: query it with .for_org(organisation), or "
            f".unscoped('<why>') for installation-wide work."
        )

    def _check_row(self, obj: models.Model) -> None:
        self._check_organisation_id(getattr(obj, "organisation_id", None))

    def _check_organisation_id(self, org_id: Any) -> None:
        check_row_organisation(self.model, org_id, self._scope_org_ids)

    def bulk_create(self, objs: Iterable[Any], *args: Any, **kwargs: Any) -> list[Any]:
        objs = list(objs)
        for obj in objs:
            self._check_row(obj)
        return super().bulk_create(objs, *args, **kwargs)

    def create(self, **kwargs: Any) -> Any:
        organisation = kwargs.get("organisation")
        self._check_organisation_id(kwargs.get("organisation_id", getattr(organisation, "pk", None)))
        return super().create(**kwargs)

    def _fetch_all(self) -> None:
        if self._result_cache is None:
            self._check_scoped()
        super()._fetch_all()

    def iterator(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        self._check_scoped()
        return super().iterator(*args, **kwargs)

    def count(self) -> int:
        if self._result_cache is None:
            self._check_scoped()
        return super().count()

    def exists(self) -> bool:
        if self._result_cache is None:
            self._check_scoped()
        return super().exists()

    def aggregate(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self._check_scoped()
        return super().aggregate(*args, **kwargs)

    def update(self, **kwargs: Any) -> int:
        self._check_scoped()
        return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        self._check_scoped()
        return super().delete()


class OrgManager(models.Manager.from_queryset(OrgQuerySet)):  # type: ignore[misc]
    pass


class OrgOwnedModel(models.Model):
    """Base of every row that belongs to one organisation. Child rows carry `organisation` too, so every
    scope filter is one indexed column."""

    organisation = models.ForeignKey(
        "controlplane.Organisation", on_delete=models.CASCADE, related_name="+", db_index=True
    )

    objects = OrgManager()

    # A model whose `organisation` is nullable says here what its rows without one are (e.g. installation-wide
    # mail); every other model's rows all belong to an organisation, which `create`/`bulk_create` check.
    installation_level_rows: str = ""

    class Meta:
        abstract = True

    def validate_unique(self, exclude: Any = None) -> None:
        # Uniqueness is installation-wide by nature (ids, global names); Django checks it through the default
        # manager, which would otherwise refuse the unscoped lookup.
        with system_scope("uniqueness validation"):
            super().validate_unique(exclude=exclude)

    def validate_constraints(self, exclude: Any = None) -> None:
        with system_scope("constraint validation"):
            super().validate_constraints(exclude=exclude)
