"""The one scoping mechanism for organisation-owned rows.

Every organisation-owned model inherits `OrgOwnedModel`. Its default manager returns an `OrgQuerySet` that
refuses to run unless the query is tied to organisations: through `.for_org(org)` / `.for_orgs(orgs)`, a filter
on `organisation`, a related manager of an already scoped parent, or an explicit, named `.unscoped(reason)`
for installation-wide work (global uniqueness checks, the edge's routing table). Forgetting the scope is
therefore an exception in the first test that touches the code path, not a leak in production.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Self

from django.db import models
from django.db.models.lookups import Exact, In

if TYPE_CHECKING:
    from controlplane.models import Organisation

_system_scope: contextvars.ContextVar[str | None] = contextvars.ContextVar("system_scope", default=None)


class UnscopedQueryError(RuntimeError):
    """An organisation-owned table was queried without saying which organisations it is for."""


@contextlib.contextmanager
def system_scope(reason: str) -> Iterator[None]:
    """Allow unscoped queries inside the block (framework internals such as uniqueness validation)."""
    token = _system_scope.set(reason)
    try:
        yield
    finally:
        _system_scope.reset(token)


def _where_filters_organisation(where: Any, column: str) -> bool:
    """True when the WHERE tree ANDs in an equality/IN on the organisation column."""
    if getattr(where, "connector", "AND") != "AND" or getattr(where, "negated", False):
        return False
    for child in getattr(where, "children", []):
        if isinstance(child, (Exact, In)):
            target = getattr(child.lhs, "target", None)
            if target is not None and target.column == column and child.lhs.alias is not None:
                return True
        elif hasattr(child, "children") and _where_filters_organisation(child, column):
            return True
    return False


class OrgQuerySet(models.QuerySet):
    _scope_reason: str | None = None

    def for_org(self, organisation: Organisation) -> Self:
        return self.for_orgs([organisation])

    def for_orgs(self, organisations: Iterable[Organisation]) -> Self:
        ids = [org.pk for org in organisations]
        qs = self.filter(organisation_id__in=ids) if len(ids) != 1 else self.filter(organisation_id=ids[0])
        qs._scope_reason = "organisation"
        return qs

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
        return clone

    def _check_scoped(self) -> None:
        if self._scope_reason or _system_scope.get():
            return
        if self._hints.get("instance") is not None:
            return  # a related manager of a parent row that was itself reached through its scope
        column = self.model._meta.get_field("organisation").column
        if _where_filters_organisation(self.query.where, column):
            return
        raise UnscopedQueryError(
            f"{self.model.__name__} is organisation-owned: query it with .for_org(organisation), or "
            f".unscoped('<why>') for installation-wide work."
        )

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
