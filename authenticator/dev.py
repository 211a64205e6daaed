"""The development login: users and their entitlements come from the site file.

For trying egi-hub on one machine without an identity provider. Anyone who can reach
the login page can sign in as any configured user, so the page says so plainly.

The login form is rendered with autoescaping (`render_login_form`): JupyterHub renders
an authenticator's ``custom_html`` with a plain, non-escaping Jinja ``Template`` and
hands it the ``username`` query argument, so an unescaped form would run any script
put in a link to ``/hub/login?username=...``.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment
from jupyterhub.auth import Authenticator
from jupyterhub.handlers.login import LoginHandler
from markupsafe import Markup
from tornado import web
from traitlets import Dict, default

from egi_hub.config import TraitPathError, describe, expect
from egi_hub.context import UserContext
from egi_hub.vo import EntitlementError, parse_entitlement

__all__ = ["DevAuthenticator", "DevLoginHandler", "DevUsers", "render_login_form"]

_USER_KEYS = ("entitlements",)


class DevUsers(Dict):
    """``{username: {entitlements: [AARC-G002 values]}}``, checked key by key."""

    info_text = "a mapping of usernames to {entitlements: [...]}"

    def validate(self, obj: Any, value: Any) -> dict[str, dict[str, list[str]]]:
        expect(value, dict, "", self.info_text)
        for name, entry in value.items():
            if not isinstance(name, str) or not name.strip():
                raise TraitPathError(str(name), "a username must be a non-empty string")
            entry = expect({} if entry is None else entry, dict, name, "a mapping")
            for key in entry:
                if key not in _USER_KEYS:
                    allowed = ", ".join(_USER_KEYS)
                    raise TraitPathError(f"{name}.{key}", f"unknown key (allowed: {allowed})")
            values = expect(entry.get("entitlements", []), list, f"{name}.entitlements", "a list")
            for i, item in enumerate(values):
                try:
                    parse_entitlement(item)
                except EntitlementError as e:
                    raise TraitPathError(
                        f"{name}.entitlements[{i}]",
                        f"not an AARC-G002 entitlement ({e}): {describe(item)}",
                    ) from None
        return super().validate(obj, {n: e or {} for n, e in value.items()})


_LOGIN_FORM = """
<form action="{{ authenticator_login_url }}" method="post" role="form" id="egi-dev-login"
      aria-labelledby="egi-dev-login-title">
  <h2 id="egi-dev-login-title" class="h5"><span class="egi-badge">Development login</span></h2>
  <div class="auth-form-body m-auto">
    <div class="alert alert-warning egi-dev-warning" id="egi-dev-login-warning" role="note">
      <strong>Development login.</strong> This hub is not connected to EGI Check-in:
      anyone who can open this page can sign in, without a password, as any user
      listed in the site file (<code>DevAuthenticator.users</code>).
      Never use it for a public service.
    </div>
    {% if login_error %}
      <p class="login_error egi-login-error" id="egi-login-error" role="alert">{{ login_error }}</p>
    {% endif %}
    <input type="hidden" name="_xsrf" value="{{ xsrf }}" />
    <label for="username_input">Username:</label>
    <input id="username_input" type="text" autocapitalize="off" autocorrect="off"
           autocomplete="username" class="form-control" name="username"
           value="{{ username or '' }}" list="egi-dev-users" autofocus="autofocus"
           aria-describedby="egi-dev-users-help" />
    <datalist id="egi-dev-users">
      {% for name in authenticator.dev_usernames %}<option value="{{ name }}">{% endfor %}
    </datalist>
    <p class="help-block" id="egi-dev-users-help">Users in the site file:
      {{ authenticator.dev_usernames | join(", ") }}</p>
    <div class="feedback-container">
      <input id="login_submit" type="submit" class="btn btn-jupyter form-control"
             value="Sign in" />
    </div>
  </div>
</form>
"""


# Every value in the form is escaped, whoever wrote the form (ours, or a site's own
# DevAuthenticator.custom_html): nothing can be forgotten.
_FORM_ENVIRONMENT = Environment(autoescape=True)


def render_login_form(form: str, values: dict[str, Any]) -> Markup:
    """The login form ``form`` (Jinja text) rendered from ``values``, every value escaped.

    ``values`` are the names JupyterHub gives ``custom_html`` (``username``,
    ``login_error``, ``authenticator_login_url``, ``authenticator``, ``xsrf``, ...);
    the result is markup, for ``login.html`` to insert as it is.
    """
    return Markup(_FORM_ENVIRONMENT.from_string(form).render(**values))


class DevLoginHandler(LoginHandler):
    """The login page, with the form rendered escaped and an answer to an empty username.

    JupyterHub's own rendering of ``custom_html`` escapes nothing (see the module's
    docstring); `render_template` renders the form again, from the same values, with
    `render_login_form`, and the unescaped text is thrown away unused.

    An empty username gets the form again, asking for one: JupyterHub would pass it to
    `DevAuthenticator.authenticate`, whose "Unknown user ''" refusal page reads as if a
    user called '' had been refused.
    """

    def render_template(self, name: str, sync: bool = False, **ns: Any) -> Any:
        if name == "login.html" and ns.get("custom_html"):
            values = {key: value for key, value in ns.items() if key != "custom_html"}
            form = self.authenticator.get_custom_html(self.hub.base_url)
            ns["custom_html"] = render_login_form(form, values)
        return super().render_template(name, sync=sync, **ns)

    async def post(self) -> None:
        if self.get_argument("username", "", strip=True):
            return await super().post()
        names = ", ".join(self.authenticator.dev_usernames) or "none configured"
        self.set_status(400)
        message = f"Please enter a username (one of: {names})."
        self.finish(await self._render(login_error=message, username=""))


class DevAuthenticator(Authenticator):
    """Sign in without a password as a user listed in the site file (development only)."""

    users = DevUsers(
        help="""
        The users who may sign in, with their ``eduperson_entitlement`` values::

            DevAuthenticator:
              users:
                alice:
                  entitlements:
                    - "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu"

        Usernames are matched after normalisation (lower case). Anyone else is refused.
        """,
    ).tag(config=True, allow_config=True)

    @default("manage_groups")
    def _default_manage_groups(self) -> bool:
        return True

    @default("custom_html")
    def _default_custom_html(self) -> str:
        return _LOGIN_FORM

    def get_handlers(self, app: Any) -> list[tuple[str, type]]:
        """The login page, with `DevLoginHandler`'s answer to an empty username; the
        Binder guest page when the site lets guests in."""
        from egi_hub.binder_service.guests import guest_handlers

        return [("/login", DevLoginHandler), *guest_handlers(app)]

    @property
    def dev_usernames(self) -> list[str]:
        """The configured usernames, normalised and sorted (shown on the login page)."""
        return sorted(self._user_map)

    @property
    def _user_map(self) -> dict[str, dict[str, Any]]:
        return {self.normalize_username(name): entry for name, entry in self.users.items()}

    def check_allow_config(self) -> None:
        self.log.warning(
            "DevAuthenticator: development login active; anyone who reaches the hub can "
            "sign in as %d configured user(s) without a password.",
            len(self.users),
        )
        super().check_allow_config()

    def check_allowed(self, username: str, authentication: dict | None = None) -> bool:
        return username in self._user_map or super().check_allowed(username, authentication)

    def user_context(self, username: str) -> UserContext:
        """The `UserContext` of a configured user."""
        entry = self._user_map[username]
        return UserContext.from_entitlements(username, entry.get("entitlements", []))

    async def authenticate(self, handler: web.RequestHandler, data: dict) -> dict[str, Any]:
        username = self.normalize_username((data or {}).get("username", ""))
        if username not in self._user_map:
            known = ", ".join(self.dev_usernames) or "none"
            # "%s" keeps a username with a '%' in it from breaking the error page.
            raise web.HTTPError(
                403,
                "%s",
                f"Unknown user {username!r}: the development login accepts only the users "
                f"listed in DevAuthenticator.users ({known}).",
            )
        context = self.user_context(username)
        return {
            "name": username,
            "groups": context.hub_groups,
            "auth_state": context.to_auth_state(),
        }
