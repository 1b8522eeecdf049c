"""S4: the access table covers every RPC of every service, 100 %, and names only real RPCs;
every permission it asks for is granted by some default role."""

from __future__ import annotations

from zhike_runtime.auth.permissions import DEFAULT_ROLES, METHOD_RULES, PERMISSIONS
from zhike_runtime.testing.contracts import every_service_method, request_fields


def test_the_contracts_define_the_four_services() -> None:
    services = {path.split("/")[1] for path in every_service_method()}
    assert services == {
        "zhike.identity.v1.IdentityService",
        "zhike.profile.v1.ProfileService",
        "zhike.offers.v1.OffersService",
        "zhike.notifications.v1.NotificationsService",
    }


def test_every_rpc_of_every_service_has_an_access_rule() -> None:
    assert every_service_method() - set(METHOD_RULES) == set()


def test_the_access_table_names_no_rpc_that_does_not_exist() -> None:
    assert set(METHOD_RULES) - every_service_method() == set()


def test_every_permission_the_table_asks_for_is_granted_by_a_default_role_and_no_other() -> None:
    granted = {permission for permissions in DEFAULT_ROLES.values() for permission in permissions}
    assert PERMISSIONS - granted == set()
    assert granted - PERMISSIONS == set()


def test_every_party_field_in_the_table_is_a_field_of_its_request() -> None:
    missing = {
        path: rule.party_field
        for path, rule in METHOD_RULES.items()
        if rule.party_field is not None and rule.party_field not in request_fields(path)
    }
    assert missing == {}
