"""egi-hub's page templates and their wiring, rendered as JupyterHub renders them.

The templates are rendered with a Jinja environment built the way JupyterHub 6.1's
``init_tornado_settings`` builds its own (our folder first, JupyterHub's templates
reachable as ``templates/<name>.html``), so an ``{% extends %}`` that JupyterHub could
not resolve fails here too.
"""

from __future__ import annotations

import os

import pytest
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader
from jupyterhub._data import DATA_FILES_PATH
from tornado import web
from traitlets import TraitError
from traitlets.config import Config

from egi_hub.authenticator.errors import VORefusedError
from egi_hub.config import check_site, configurable_classes
from egi_hub.pages import TEMPLATES, SitePages, hub_page_config, readable_error
from egi_hub.vo import parse_rule


@pytest.fixture
def site():
    SitePages.clear_instance()
    config = Config()
    config.SitePages.site_name = "Test Grid <Notebooks>"
    config.SitePages.support_url = "https://support.example.org/"
    yield SitePages.instance(config=config)
    SitePages.clear_instance()


def environment(site_dirs: tuple[str, ...] = ()) -> Environment:
    """A sync Jinja environment like JupyterHub's (as ``write_error`` uses); ``site_dirs``
    are a site's own template folders, in front of ours as `hub_page_config` puts them."""
    base = os.path.join(DATA_FILES_PATH, "templates")
    loader = ChoiceLoader(
        [
            PrefixLoader({"templates": FileSystemLoader([base])}, "/"),
            FileSystemLoader([*site_dirs, str(TEMPLATES), base]),
        ]
    )
    return Environment(loader=loader, autoescape=True)


def render(name: str, site: SitePages, site_dirs: tuple[str, ...] = (), **ns) -> str:
    namespace = {
        "site": site,
        "static_url": lambda path, **kw: f"/static/{path}",
        "base_url": "/hub/",
        "prefix": "/",
        "user": None,
        "xsrf_token": "x",
        "parsed_scopes": set(),
        **ns,
    }
    return environment(site_dirs).get_template(name).render(**namespace)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (
            "HTTP 403: Forbidden (Profile 'large' is not available)",
            "Profile 'large' is not available",
        ),
        ("HTTP 403: error (a (nested) reason)", "a (nested) reason"),
        ("HTTP 500: Internal Server Error (line one\nline two)", "line one\nline two"),
        ("Quota reached (2 of 2 servers)", "Quota reached (2 of 2 servers)"),
        (None, ""),
    ],
)
def test_readable_error_drops_tornados_status_wrapper(raw, shown):
    assert readable_error(raw) == shown


def test_page_frame_names_the_site_escaped(site):
    html = render("login.html", site, login_service="EGI Check-in", authenticator_login_url="/x")
    assert "<title>Sign in · Test Grid &lt;Notebooks&gt;</title>" in html
    assert 'id="egi-site-name" class="egi-site-name">Test Grid &lt;Notebooks&gt;<' in html
    assert 'svg id="egi-logo"' in html  # no logo_url: egi-hub's own mark
    assert 'id="egi-support-link" href="https://support.example.org/"' in html
    assert ">Sign in with EGI Check-in</a>" in html


def test_spawn_form_shows_a_text_error_without_wrapper_or_prefix(site):
    html = render(
        "spawn.html",
        site,
        error_message="HTTP 403: Forbidden (Profile 'large' is not available to you)",
        html_error_message=None,
        spawner_options_form="",
    )
    assert "Profile &#39;large&#39; is not available to you" in html
    assert "Error:" not in html and "HTTP 403" not in html


def test_spawn_form_prefers_the_html_message_jupyterhub_passes(site):
    # JupyterHub 6.1 passes html_error_message; its own spawn.html reads another name.
    html = render(
        "spawn.html",
        site,
        error_message="flattened text",
        html_error_message='<pre class="egi-spawn-log">line 1\nline 2</pre>',
        spawner_options_form="",
    )
    assert '<pre class="egi-spawn-log">line 1\nline 2</pre>' in html
    assert "flattened text" not in html


def test_error_page_titles_the_reason_or_the_status_in_words(site):
    refused = VORefusedError("eve", [parse_rule("vo.access.egi.eu")], site.enrolment_url)
    html = render(
        "error.html",
        site,
        status_code=403,
        status_message=refused.reason,
        message=refused.jupyterhub_message,
        message_html=refused.jupyterhub_html_message,
        exception=refused,
    )
    assert '<h1 id="egi-error-title">Not a member of an allowed VO</h1>' in html
    assert 'href="https://operations-portal.egi.eu/vo/search">enrol in vo.access.egi.eu' in html
    assert site.error_title(403, None) == "Forbidden"
    labelled = web.HTTPError(500, "%s", "the server exited")
    labelled.reason = "error"  # JupyterHub's label on any failed spawn
    assert site.error_title(500, labelled) == "Internal Server Error"


def test_hub_page_config_adds_to_a_sites_own_settings():
    c = Config()
    c.JupyterHub.template_paths = ["/srv/site-templates"]
    c.JupyterHub.template_vars = {"announcement": "maintenance on Monday", "site": "theirs"}
    c.CheckinAuthenticator.enrolment_urls = {"a.vo": "https://old/a", "b.vo": "https://old/b"}
    c.SitePages.enrolment_urls = {"b.vo": "https://new/b"}
    hub_page_config(c)
    hub_page_config(c)  # twice: the same result
    assert c.JupyterHub.template_paths == ["/srv/site-templates", str(TEMPLATES)]
    assert c.JupyterHub.template_vars == {"announcement": "maintenance on Monday", "site": "theirs"}
    assert c.SitePages.enrolment_urls == {"a.vo": "https://old/a", "b.vo": "https://new/b"}


def test_site_template_var_is_the_hubs_site_pages():
    SitePages.clear_instance()
    try:
        c = Config()
        c.SitePages.site_name = "From the site file"
        site_var = hub_page_config(c).JupyterHub.template_vars["site"]
        assert site_var(None).site_name == "From the site file"
        assert site_var(None) is SitePages.instance()
    finally:
        SitePages.clear_instance()


def test_checkin_enrolment_urls_is_a_deprecated_alias_beneath_site_pages():
    from egi_hub.authenticator.checkin import CheckinAuthenticator

    SitePages.clear_instance()
    try:
        c = Config()
        c.SitePages.enrolment_urls = {"vo.notebooks.egi.eu": "https://new/notebooks"}
        c.CheckinAuthenticator.enrolment_urls = {
            "vo.notebooks.egi.eu": "https://old/notebooks",
            "vo.access.egi.eu": "https://old/access",
        }
        auth = CheckinAuthenticator(config=c)
        assert auth.enrolment_url(parse_rule("vo.notebooks.egi.eu")) == "https://new/notebooks"
        assert auth.enrolment_url(parse_rule("vo.access.egi.eu/sub")) == "https://old/access"
        assert (
            auth.enrolment_url(parse_rule("other.vo"))
            == "https://operations-portal.egi.eu/vo/search"
        )
    finally:
        SitePages.clear_instance()


@pytest.mark.parametrize(
    ("status", "title"),
    [(403, "Your server was not started"), (500, "Your server could not start")],
)
def test_not_running_page_tells_a_refusal_from_a_failure(site, status, title):
    html = render(
        "not_running.html",
        site,
        failed=True,
        server_name="",
        spawn_url="/hub/spawn/alice",
        failed_message="HTTP 403: error (Quota reached)",
        failed_html_message=None,
        exception=web.HTTPError(status),
    )
    assert f"<h1>{title}</h1>" in html
    assert '<p class="egi-message">Quota reached</p>' in html


# --- link schemes: a value the pages put in href/src must be a link, not a script --------


def site_check(**settings) -> list[str]:
    """The site-file check's issues for a ``SitePages`` section with ``settings``."""
    classes = configurable_classes()
    assert classes["SitePages"] is SitePages  # what `egi-hub config check` looks up
    return [str(issue) for issue in check_site({"SitePages": settings}, classes)]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("support_url", "javascript:alert(document.domain)"),
        ("support_url", " JavaScript:alert(1)"),
        ("support_url", "java\tscript:alert(1)"),
        ("support_url", "mailto:"),
        ("terms_url", "mailto:terms@example.org"),
        ("terms_url", "data:text/html,<script>alert(1)</script>"),
        ("privacy_url", "//example.org/privacy"),
        ("privacy_url", "https:/no-host"),
        ("default_enrolment_url", "vbscript:x"),
        ("logo_url", "javascript:alert(1)"),
        ("logo_url", "data:text/html;base64,PHNjcmlwdD4="),
        ("logo_url", "mailto:logo@example.org"),
    ],
)
def test_a_link_that_is_not_a_web_page_fails_the_check_naming_its_key(key, value):
    issues = site_check(**{key: value})
    assert len(issues) == 1 and issues[0].startswith(f"SitePages.{key}: "), issues


def test_an_enrolment_link_that_is_not_a_web_page_is_named_by_its_vo():
    issues = site_check(
        enrolment_urls={"vo.ok.eu": "https://ok.example/enrol", "vo.bad.eu": "javascript:x"}
    )
    assert issues == [
        "SitePages.enrolment_urls.vo.bad.eu: expected a link starting with https:, http:, "
        "got string 'javascript:x'"
    ]
    assert site_check(enrolment_urls={"vo.bad.eu": 3}) == [
        "SitePages.enrolment_urls.vo.bad.eu: expected a link, got int 3"
    ]


def test_the_deprecated_checkin_enrolment_urls_are_checked_the_same_way():
    issues = [
        str(issue)
        for issue in check_site(
            {"CheckinAuthenticator": {"enrolment_urls": {"vo.x.eu": "javascript:x"}}},
            configurable_classes(),
        )
    ]
    assert len(issues) == 1 and issues[0].startswith("CheckinAuthenticator.enrolment_urls.vo.x.eu")


def test_web_mail_and_inline_image_links_and_empty_values_pass():
    assert (
        site_check(
            support_url="mailto:helpdesk@example.org",
            terms_url="http://example.org/terms",
            privacy_url="HTTPS://example.org/privacy",
            default_enrolment_url="",
            logo_url="data:image/svg+xml,%3Csvg viewBox='0 0 10 10'/%3E",
            enrolment_urls={"vo.a.eu": "https://a.example/enrol", "vo.b.eu": ""},
        )
        == []
    )
    assert site_check(support_url="", terms_url="", privacy_url="", logo_url="") == []
    assert site_check(logo_url="https://example.org/logo.svg") == []


def test_a_bad_link_set_in_python_config_is_refused_too():
    with pytest.raises(TraitError, match="javascript:alert"):
        SitePages(support_url="javascript:alert(1)")


# --- a site's own templates, in front of ours (docs/admin/branding.md) -------------------


def test_a_sites_page_html_extends_ours_as_egi_page_and_changes_one_block(site, tmp_path):
    (tmp_path / "page.html").write_text(
        '{% extends "egi_page.html" %}\n'
        '{% block footer %}<p id="site-footer">Run by {{ site.site_name }}</p>{% endblock %}\n'
    )
    html = render(
        "login.html",
        site,
        (str(tmp_path),),
        login_service="EGI Check-in",
        authenticator_login_url="/x",
    )
    assert '<p id="site-footer">Run by Test Grid &lt;Notebooks&gt;</p>' in html
    assert 'id="egi-footer"' not in html  # the block the site replaced
    assert 'id="egi-site-name"' in html and ">Sign in with EGI Check-in</a>" in html


def test_a_sites_other_template_extends_our_page_html(site, tmp_path):
    (tmp_path / "announcement.html").write_text(
        '{% extends "page.html" %}{% block main %}<p id="news">Maintenance</p>{% endblock %}'
    )
    html = render("announcement.html", site, (str(tmp_path),))
    assert '<p id="news">Maintenance</p>' in html
    assert 'id="egi-footer"' in html and 'id="egi-site-name"' in html


def test_a_sites_page_html_may_replace_ours_with_jupyterhubs(site, tmp_path):
    (tmp_path / "page.html").write_text(
        '{% extends "templates/page.html" %}{% block footer %}<p id="plain"></p>{% endblock %}'
    )
    html = render(
        "login.html", site, (str(tmp_path),), login_service="X", authenticator_login_url="/x"
    )
    assert '<p id="plain"></p>' in html
    assert 'id="egi-site-name"' not in html  # egi-hub's frame is gone with its page.html
