"""The development login form: every value a request or the site file puts in it is escaped.

JupyterHub renders an authenticator's ``custom_html`` with a non-escaping ``Template`` and
passes it the ``username`` query argument; `render_login_form` is what the dev login
renders the form with instead (`DevLoginHandler.render_template`).
"""

from __future__ import annotations

import re

import pytest

from egi_hub.authenticator.dev import DevAuthenticator, render_login_form

SCRIPT_USERNAME = '"><script>alert(1)</script>'
IMG_ERROR = "<img src=x onerror=alert(1)>"
ODD_USER = '<b>eve</b>"'


@pytest.fixture
def authenticator() -> DevAuthenticator:
    return DevAuthenticator(users={"alice": {}, ODD_USER: {}})


def values(authenticator: DevAuthenticator, **overrides) -> dict:
    """The names JupyterHub 6.1's LoginHandler gives ``custom_html``."""
    return {
        "next": "",
        "username": None,
        "login_error": None,
        "login_url": "/hub/login",
        "authenticator_login_url": "/hub/login?next=",
        "authenticator": authenticator,
        "xsrf": "token",
        **overrides,
    }


def form(authenticator: DevAuthenticator, **overrides) -> str:
    text = authenticator.get_custom_html("/hub/")
    return str(render_login_form(text, values(authenticator, **overrides)))


def test_username_from_the_query_stays_inside_the_value_attribute(authenticator):
    html = form(authenticator, username=SCRIPT_USERNAME)
    assert "<script" not in html
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in html


def test_login_error_is_text(authenticator):
    html = form(authenticator, login_error=f"Unknown user {IMG_ERROR!r}")
    assert "<img" not in html
    error = re.search(r'id="egi-login-error" role="alert">(.*?)</p>', html)
    assert error is not None
    assert error[1] == "Unknown user &#39;&lt;img src=x onerror=alert(1)&gt;&#39;"


def test_site_file_usernames_are_escaped_in_the_list_and_the_help(authenticator):
    html = form(authenticator)
    assert "<b>" not in html
    assert '<option value="&lt;b&gt;eve&lt;/b&gt;&#34;">' in html
    assert "Users in the site file:\n      &lt;b&gt;eve&lt;/b&gt;&#34;, alice</p>" in html


def test_form_action_and_xsrf_are_escaped(authenticator):
    html = form(authenticator, authenticator_login_url='/hub/login?next="><x>', xsrf='"<x>')
    assert "<x>" not in html
    assert 'action="/hub/login?next=&#34;&gt;&lt;x&gt;"' in html
    assert 'name="_xsrf" value="&#34;&lt;x&gt;"' in html


def test_a_sites_own_form_is_escaped_too():
    site_form = "<p>Hello {{ username }}</p>"
    auth = DevAuthenticator(custom_html=site_form)
    html = str(render_login_form(auth.get_custom_html("/hub/"), values(auth, username="<i>")))
    assert html == "<p>Hello &lt;i&gt;</p>"


def test_the_ordinary_form_keeps_its_values(authenticator):
    html = form(authenticator, username="alice", login_error="Please enter a username.")
    assert 'name="username"\n           value="alice"' in html
    assert ">Please enter a username.</p>" in html
    assert 'action="/hub/login?next="' in html
