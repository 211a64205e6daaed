"""Refusals people understand: plain text and escaped HTML with links, never a bare
"HTTP 403" wrapper (JupyterHub shows ``jupyterhub_message`` as it is)."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

import pytest
from jupyterhub.utils import format_exception

from egi_hub.pages import SitePages
from egi_hub.spawner.profiles import ProfileListTrait, option_overrides
from egi_hub.spawner.refusals import Refusal
from tests.spawners import local_vo_spawner

ACCESS = "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu"
PROFILES = [
    {"display_name": "Small", "slug": "small", "kubespawner_override": {"cpu_limit": 1}},
    {
        "display_name": "Large <b>",
        "slug": "large",
        "allowed_vos": ["vo.notebooks.egi.eu"],
        "kubespawner_override": {"cpu_limit": 4},
        "profile_options": {"image": {"choices": {"a": {}}}},
    },
]


@pytest.fixture
def spawner(tmp_path):
    SitePages.clear_instance()
    SitePages.instance().enrolment_urls = {"vo.notebooks.egi.eu": "https://e.org/join?v=nb&x"}
    with local_vo_spawner(tmp_path, "alice", [ACCESS], PROFILES) as s:
        yield s
    SitePages.clear_instance()


async def refusal_of(s, options) -> Refusal:
    s.user_options = options
    with pytest.raises(Refusal) as info:
        await s.start()
    return info.value


async def test_a_profile_of_another_vo_names_the_vo_and_its_enrolment_page(spawner):
    e = await refusal_of(spawner, {"profile": "large"})
    assert e.status_code == 403
    text, html = format_exception(e)  # what JupyterHub shows
    assert text == (
        "The profile 'Large <b>' needs membership of vo.notebooks.egi.eu. "
        "Join vo.notebooks.egi.eu: https://e.org/join?v=nb&x. Then log out and log in again. "
        "Profiles open to you: Small."
    )
    assert "HTTP 403" not in text
    assert "Large &lt;b&gt;" in html
    assert '<a href="https://e.org/join?v=nb&amp;x">Join vo.notebooks.egi.eu</a>' in html


async def test_an_unknown_profile_lists_the_ones_open_to_the_user(spawner):
    e = await refusal_of(spawner, {"profile": "huge"})
    assert (
        e.jupyterhub_message
        == "There is no profile 'huge' on this hub. Profiles open to you: Small."
    )


def test_an_option_choice_that_does_not_exist_is_a_400_in_words():
    large = ProfileListTrait().validate(None, PROFILES)[1]
    with pytest.raises(Refusal) as info:
        option_overrides(large, {"image": "b"})
    assert info.value.status_code == 400
    text, html = format_exception(info.value)
    assert text == "Option 'image' of profile 'large' has no choice 'b' (choices: a)"
    assert html == f"<p>{text.replace(chr(39), '&#x27;')}</p>"


async def test_a_quota_refusal_links_the_home_page_where_servers_stop(spawner):
    spawner.quota.vo_limits = {"vo.access.egi.eu": {"max_servers": 0}}
    e = await refusal_of(spawner, {"profile": "small"})
    text, html = format_exception(e)
    assert text.startswith("vo.access.egi.eu allows no servers at all.")
    assert "Quota reached" not in text
    spawner.quota.vo_limits = {"vo.access.egi.eu": {"max_servers": 1}}
    spawner.quota.admit(spawner_charge := _charge("alice", "gpu"))
    e = await refusal_of(spawner, {"profile": "small"})
    text, html = format_exception(e)
    assert text == (
        "vo.access.egi.eu allows 1 server and 1 is running. Running now: your server 'gpu'. "
        "Stop one on your home page to start another: /hub/home."
    )
    assert '<a href="/hub/home">Stop one on your home page to start another</a>' in html
    spawner.quota.release(spawner_charge.user, spawner_charge.server)


def _charge(user, server):
    from egi_hub.spawner.quota import Charge

    return Charge(user, server, "vo.access.egi.eu")


async def test_a_refused_start_puts_the_records_back(spawner):
    """JupyterHub saved the refused options and marked activity before start; its
    cleanup (stop, then the post-stop hook) ends with the last started server's
    options and the activity from before."""
    before = datetime(2024, 1, 2, 3, 4, 5)
    spawner.orm_spawner = SimpleNamespace(
        name="", server=None, user_options={"profile": "small"}, last_activity=before
    )
    spawner._egi_last_options = {"profile": "small"}  # the last server that started
    # user.spawn: clear the state, save the new options, mark activity, start.
    spawner.clear_state()
    spawner.orm_spawner.user_options = {"profile": "large"}
    spawner.orm_spawner.last_activity = datetime(2030, 1, 1)
    await refusal_of(spawner, {"profile": "large"})
    # user.stop: poll() finds no process (and clears the state), activity is stamped
    # again, then the post-stop hook runs.
    spawner.clear_state()
    spawner.orm_spawner.last_activity = datetime(2030, 1, 1, 0, 1)
    spawner.run_post_stop_hook()
    assert spawner.orm_spawner.user_options == {"profile": "small"}
    assert spawner.user_options == {"profile": "small"}
    assert spawner.orm_spawner.last_activity == before
    # The options survive the state being cleared and a new spawner object.
    spawner.clear_state()
    assert spawner.get_state()["egi_last_options"] == {"profile": "small"}


async def test_profile_options_are_handled_without_the_unhandled_warning(spawner, caplog):
    await spawner._run_apply_user_options({"profile": "large", "image": "a"})
    assert "Received unhandled user_options" not in caplog.text
    await spawner._run_apply_user_options({"profile": "small", "colour": "red"})
    assert "ignoring 1 user_options that no profile option takes: ['colour']" in caplog.text
    caplog.clear()
    # Names an API caller chose: quoted (a newline stays in the repr), at most ten, counted.
    names = {f"x{i:02}\nforged log line": 1 for i in range(25)}
    await spawner._run_apply_user_options({"profile": "small", **names})
    (record,) = [r for r in caplog.records if "ignoring" in r.getMessage()]
    text = record.getMessage()
    assert "ignoring 25 user_options" in text and "\n" not in text
    assert "'x09\\nforged log line', '...'" in text and "x10" not in text


@pytest.mark.parametrize(
    "options, what",
    [
        ({"profile": ["small"]}, "The profile must be given as text, not list"),
        ({"profile": {"slug": "small"}}, "The profile must be given as text, not dict"),
        ({"profile": "large", "image": []}, "Option 'image' must be given as text, not list"),
        (
            {"profile": "large", "image--unlisted-choice": {"a": 1}},
            "Option 'image--unlisted-choice' must be given as text, not dict",
        ),
        ({"profile": "large", "image": 3}, "Option 'image' must be given as text, not int"),
    ],
)
async def test_a_profile_or_option_value_that_is_not_text_is_a_400_before_anything(
    spawner, options, what
):
    """JupyterHub saves user_options before the start: a list there once broke the form
    at every later visit. The hook refuses it (400, in words) and the cleanup that
    follows puts the last started options back."""
    spawner.orm_spawner = SimpleNamespace(name="", server=None, user_options=options)
    spawner._egi_last_options = {"profile": "small"}
    with pytest.raises(Refusal) as info:
        await spawner._run_apply_user_options(options)
    assert info.value.status_code == 400
    assert info.value.message.startswith(what)
    text, html = format_exception(info.value)
    assert "HTTP 400" not in text and "<p>" in html
    spawner.run_post_stop_hook()  # JupyterHub's cleanup after a failed start
    assert spawner.orm_spawner.user_options == {"profile": "small"}


async def test_options_of_other_profiles_and_nulls_are_not_refused(spawner, caplog):
    await spawner._run_apply_user_options({"profile": None})
    await spawner._run_apply_user_options({"profile": "small", "image": ["not ours"]})
    assert "ignoring 1 user_options" in caplog.text
