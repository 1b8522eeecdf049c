"""Who is calling and what they may do: bearer-token authentication and the access table,
applied to every RPC by the server interceptor before any handler runs.

Handlers read the outcome through `current_call()`: the caller (the token's subject and roles,
never a request field) and whether personal data may be shown unmasked.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zhike_runtime.auth.audit import AuditEntry, AuditLog
from zhike_runtime.auth.permissions import (
    CUSTOMER_ROLES,
    DEFAULT_ROLES,
    METHOD_RULES,
    MethodRule,
)
from zhike_runtime.auth.tokens import TokenRejected, TokenVerifier
from zhike_runtime.errors import NotFound, PermissionDenied, Unauthenticated
from zhike_runtime.paging import bind_page_token_owner, unbind_page_token_owner

PURPOSE_HEADER = "x-zhike-purpose"
_BEARER = "bearer "


@dataclass(frozen=True)
class Caller:
    subject: str
    roles: tuple[str, ...]
    permissions: frozenset[str]
    # Set on customer-delegated tokens (the mobile app acting for a logged-in customer).
    party_id: str | None = None

    def can(self, permission: str) -> bool:
        return permission in self.permissions


@dataclass
class CallAccess:
    """One RPC's access decision, visible to its handler."""

    caller: Caller
    method: str
    rule: MethodRule
    purpose: str
    unmasked: bool
    # The party the call turned out to be about (a merged party answers with its survivor).
    party_id: str = ""
    audit_fields: tuple[str, ...] = field(default_factory=tuple)
    audited: bool = False

    def about_party(self, party_id: str) -> None:
        """The call turned out to be about `party_id` (e.g. the survivor of a merged party it
        asked for). A customer's token is for his party as it is now: a retired id answers for
        another party — after a split, perhaps another person — so it is not found, as any
        party but his own. Call it before the handler changes anything."""
        if self.caller.party_id is not None and party_id != self.caller.party_id:
            raise NotFound("party", self.party_id)
        self.party_id = party_id

    def audit_use_of(self, *fields: str) -> None:
        """The handler found the call touches personal data (e.g. a search by ID number):
        audit it with these fields."""
        self.audited = True
        self.audit_fields = tuple(dict.fromkeys((*self.audit_fields, *fields)))


_CURRENT: contextvars.ContextVar[CallAccess | None] = contextvars.ContextVar(
    "zhike_call_access", default=None
)


def current_call() -> CallAccess:
    """The access decision of the RPC being handled; a handler outside an RPC is a bug."""
    access = _CURRENT.get()
    if access is None:
        raise RuntimeError("no RPC access decision in this context")
    return access


@dataclass(frozen=True)
class BoundCall:
    access: contextvars.Token[CallAccess | None]
    page_token_owner: contextvars.Token[str]


def bind_call(access: CallAccess) -> BoundCall:
    """The call's access decision for its handler; its page tokens belong to its caller."""
    return BoundCall(_CURRENT.set(access), bind_page_token_owner(access.caller.subject))


def unbind_call(bound: BoundCall) -> None:
    unbind_page_token_owner(bound.page_token_owner)
    _CURRENT.reset(bound.access)


def load_roles(path: Path | None) -> dict[str, frozenset[str]]:
    """Role → permissions: the file's table (JSON object of lists) or the defaults."""
    if path is None:
        return {role: frozenset(perms) for role, perms in DEFAULT_ROLES.items()}
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not all(
        isinstance(perms, list) and all(isinstance(p, str) for p in perms)
        for perms in data.values()
    ):
        raise ValueError(
            f"{path}: must be a JSON object mapping each role to a list of permissions"
        )
    return {str(role): frozenset(perms) for role, perms in data.items()}


class AccessControl:
    def __init__(
        self,
        verifier: TokenVerifier,
        roles: Mapping[str, frozenset[str]],
        audit: AuditLog,
        *,
        rules: Mapping[str, MethodRule] = METHOD_RULES,
        roles_claim: str = "roles",
        party_claim: str = "party_id",
        customer_roles: frozenset[str] = frozenset(CUSTOMER_ROLES),
    ) -> None:
        self._verifier = verifier
        self._roles = roles
        self.audit = audit
        self.rules = rules
        self._roles_claim = roles_claim
        self._party_claim = party_claim
        self._customer_roles = customer_roles

    async def authenticate(self, metadata: Sequence[tuple[str, Any]]) -> Caller:
        headers = [value for key, value in metadata if key == "authorization"]
        if not headers:
            raise Unauthenticated("no bearer token: send 'authorization: Bearer <token>'")
        if len(headers) > 1:
            raise Unauthenticated("more than one authorization header")
        header = headers[0]
        if not isinstance(header, str) or not header.lower().startswith(_BEARER):
            raise Unauthenticated("the authorization header is not 'Bearer <token>'")
        token = header[len(_BEARER) :].strip()
        if not token:
            raise Unauthenticated("the bearer token is empty")
        try:
            verified = await self._verifier.verify(token)
        except TokenRejected as rejected:
            raise Unauthenticated(str(rejected)) from None
        roles = _string_list(verified.claims.get(self._roles_claim))
        permissions = frozenset(p for role in roles for p in self._roles.get(role, ()))
        party: str | None = None
        if self._party_claim in verified.claims:
            # Present means confined: a null or empty claim is no party, not "any party".
            claimed = verified.claims[self._party_claim]
            if not isinstance(claimed, str) or not claimed:
                raise Unauthenticated(f"the {self._party_claim} claim is not a party id")
            party = claimed
        customer_roles = sorted(self._customer_roles.intersection(roles))
        if party is None and customer_roles:
            # Without the claim such a token would read as staff, open to every party.
            raise Unauthenticated(
                f"the role {customer_roles[0]} acts for one customer: "
                f"the token needs the {self._party_claim} claim"
            )
        return Caller(verified.subject, roles, permissions, party)

    async def authorise(
        self, method: str, request: Any, caller: Caller, purpose: str, trace_id: str
    ) -> CallAccess:
        """The call's access decision, or PermissionDenied / NotFound (audited)."""
        rule = self.rules.get(method)
        if rule is None:
            await self._refused(caller, method, "", purpose, "PERMISSION_DENIED", trace_id)
            raise PermissionDenied(method, "no access rule: methods are denied by default")
        requested_party = str(getattr(request, rule.party_field, "")) if rule.party_field else ""
        if not caller.can(rule.permission):
            await self._refused(
                caller, method, requested_party, purpose, "PERMISSION_DENIED", trace_id
            )
            raise PermissionDenied(method, f"needs the permission {rule.permission}")
        if caller.party_id is not None:
            if rule.party_field is None:
                await self._refused(caller, method, "", purpose, "PERMISSION_DENIED", trace_id)
                raise PermissionDenied(method, "not open to customer-delegated tokens")
            if requested_party != caller.party_id:
                # The same answer as for a party that does not exist, without asking the store,
                # so neither the answer nor its timing tells whether the party exists.
                await self._refused(caller, method, requested_party, purpose, "NOT_FOUND", trace_id)
                raise NotFound("party", requested_party)
        unmasked = rule.unmask_permission is not None and caller.can(rule.unmask_permission)
        return CallAccess(
            caller,
            method,
            rule,
            purpose,
            unmasked,
            party_id=requested_party,
            audit_fields=rule.unmasked_fields if unmasked else (),
            audited=rule.audited,
        )

    async def record(self, access: CallAccess, outcome: str, trace_id: str) -> None:
        """Audits a call that its rule says to audit (unmasked reads and audited methods), and
        every refusal of a customer-delegated call: one its handler refused (another party's
        notification or decision, a foreign page token) is an attempt too."""
        refused_customer = access.caller.party_id is not None and outcome != "OK"
        if not (access.unmasked or access.audited or refused_customer):
            return
        await self.audit.append(
            AuditEntry(
                actor=access.caller.subject,
                roles=access.caller.roles,
                method=access.method,
                party_id=access.party_id,
                fields=access.audit_fields,
                purpose=access.purpose,
                outcome=outcome,
                trace_id=trace_id,
            )
        )

    async def _refused(
        self, caller: Caller, method: str, party_id: str, purpose: str, outcome: str, trace: str
    ) -> None:
        await self.audit.append(
            AuditEntry(
                actor=caller.subject,
                roles=caller.roles,
                method=method,
                party_id=party_id,
                fields=(),
                purpose=purpose,
                outcome=outcome,
                trace_id=trace,
                recorded_at=dt.datetime.now(dt.UTC),
            )
        )


def _string_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list):
        return tuple(str(v) for v in value if isinstance(v, str))
    return ()
