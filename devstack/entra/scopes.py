"""Parse v2.0 scopes (`https://api.partnercenter.microsoft.com/user_impersonation`,
`<resource>/.default`, `User.Read`, `openid`, ...) into resources and permissions."""

from __future__ import annotations

from dataclasses import dataclass

from .. import seed
from .directory import OIDC_SCOPES, App, Directory, Resource
from .errors import EntraError

MAX_SCOPES = 50


@dataclass(frozen=True)
class ResourceScopes:
    resource: Resource
    permissions: frozenset[str]  # canonical names
    default: bool = False  # `/.default`: the app's statically registered permissions
    by_app_id: bool = False  # named by the resource's app id GUID: that is the token's `aud`

    @property
    def audience(self) -> str:
        return self.resource.app_id if self.by_app_id else self.resource.uri

    def expand(self, app: App) -> ResourceScopes:
        """Resolve `/.default` against the app registration (AADSTS650057 if it lists none)."""
        if not self.default:
            return self
        registered = app.permissions.get(self.resource.uri, ())
        if not registered:
            listed = ", ".join(app.permissions) or "none"
            raise EntraError(
                650057, "invalid_client",
                "Invalid resource. The client has requested access to a resource which is not "
                "listed in the requested permissions in the client's application registration. "
                f"Client app ID: {app.app_id}({app.name}). Resource value from request: "
                f"{self.resource.uri}. Resource app ID: {self.resource.app_id}. List of valid "
                f"resources from app registration: {listed}.")
        names = {p.name for n in registered if (p := self.resource.permission(n))}
        return ResourceScopes(self.resource, frozenset(names) | self.permissions, True,
                              self.by_app_id)

    def scope_strings(self) -> list[str]:
        if self.resource.uri == seed.GRAPH_RESOURCE:
            return sorted(self.permissions)
        return [f"{self.resource.uri}/{p}" for p in sorted(self.permissions)]


@dataclass(frozen=True)
class ScopeSet:
    oidc: frozenset[str]
    resources: tuple[ResourceScopes, ...]

    @property
    def single(self) -> ResourceScopes | None:
        return self.resources[0] if self.resources else None


def parse(directory: Directory, text: str, tenant_name: str) -> ScopeSet:
    """Split a space-separated scope string; unknown resources and scopes are errors."""
    items = text.split()
    if len(items) > MAX_SCOPES:
        raise EntraError(70011, "invalid_scope",
                         "The provided value for the input parameter 'scope' is not valid. "
                         "Too many scopes were requested.")
    oidc: set[str] = set()
    by_resource: dict[str, tuple[Resource, set[str], bool]] = {}
    by_guid: set[str] = set()
    for item in items:
        if item.lower() in OIDC_SCOPES:
            oidc.add(item.lower())
            continue
        if "/" in item:
            identifier, _, name = item.rpartition("/")
        else:  # a bare name is a Microsoft Graph scope
            identifier, name = seed.GRAPH_RESOURCE, item
        resource = directory.resource(identifier)
        if resource is None:
            raise EntraError(
                500011, "invalid_resource",
                f"The resource principal named {identifier} was not found in the tenant named "
                f"{tenant_name}. This can happen if the application has not been installed by "
                "the administrator of the tenant or consented to by any user in the tenant. You "
                "might have sent your authentication request to the wrong tenant.")
        if identifier.lower() == resource.app_id.lower():
            by_guid.add(resource.uri)
        _, names, _ = by_resource.setdefault(resource.uri, (resource, set(), False))
        if name == ".default":
            by_resource[resource.uri] = (resource, names, True)
            continue
        permission = resource.permission(name)
        if permission is None:
            raise EntraError(70011, "invalid_scope",
                             "The provided value for the input parameter 'scope' is not valid. "
                             f"The scope {item} is not valid.")
        names.add(permission.name)
    return ScopeSet(
        frozenset(oidc),
        tuple(ResourceScopes(r, frozenset(n), d, r.uri in by_guid)
              for r, n, d in by_resource.values()),
    )
