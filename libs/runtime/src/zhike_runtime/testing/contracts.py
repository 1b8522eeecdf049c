"""The RPCs the contracts (proto/, generated into the `zhike` package) define."""

from __future__ import annotations

import importlib
import pkgutil

import zhike


def every_service_method() -> set[str]:
    """Full method paths (`/package.Service/Method`) of every service defined in proto/."""
    methods: set[str] = set()
    for module_info in pkgutil.walk_packages(zhike.__path__, prefix="zhike."):
        if not module_info.name.endswith("_service_pb2"):
            continue
        module = importlib.import_module(module_info.name)
        for service in module.DESCRIPTOR.services_by_name.values():
            methods |= {f"/{service.full_name}/{method.name}" for method in service.methods}
    return methods


def request_fields(method: str) -> set[str]:
    """The field names of a method's request message."""
    service_name, method_name = method.strip("/").split("/")
    for module_info in pkgutil.walk_packages(zhike.__path__, prefix="zhike."):
        if not module_info.name.endswith("_service_pb2"):
            continue
        module = importlib.import_module(module_info.name)
        for service in module.DESCRIPTOR.services_by_name.values():
            if service.full_name == service_name:
                return set(service.methods_by_name[method_name].input_type.fields_by_name)
    raise KeyError(method)
