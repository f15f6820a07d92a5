"""Who may see what: the role map, the library filters, and the app per role (AppTest).

AppTest plays the signed-in person through ``AppTest.user`` (what ``st.user`` reads) and the
role map through ``AppTest.secrets``; the real app uses ``st.login`` (OIDC, ``[auth]`` in
``secrets.toml``) for the same ``st.user``.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from tests.app_fixtures import go_to
from tests.conftest import ROOT
from tests.test_cli_costs import billed_workspace  # noqa: F401  (module fixture)
from workbench.access import RoleMap, Viewer, restrict_frame, restrict_showback
from workbench.cost_views import cost_totals
from workbench.errors import WorkbenchError
from workbench.showback import IDLE, ShowbackPolicy, showback

ACCESS = {
    "finance": ["CFO@example.com"],
    "teams": {"ana@example.com": "search-ranking", "bo@example.com": ["vision", "maps"]},
}
TEAM = "search-ranking"


def test_role_map_gives_each_email_its_role():
    roles = RoleMap.from_mapping(ACCESS)
    assert roles.viewer_for("cfo@example.com") == Viewer("cfo@example.com", "finance")
    ana = roles.viewer_for(" Ana@Example.com ")
    assert ana is not None and ana.role == "team" and ana.teams == frozenset({TEAM})
    assert roles.viewer_for("stranger@example.com") is None
    assert roles.viewer_for(None) is None
    assert roles.viewer_for("") is None


@pytest.mark.parametrize(
    "access",
    [{"finance": 3}, {"teams": ["a"]}, {"teams": {"a@x": 5}}, {"finance": [1]}],
)
def test_a_broken_role_map_is_one_clear_error(access):
    with pytest.raises(WorkbenchError, match=r"secrets\.toml"):
        RoleMap.from_mapping(access)


def test_restrict_frame_keeps_only_the_viewers_teams():
    frame = pl.DataFrame({"team": ["vision", "maps", "search-ranking", None], "x": [1, 2, 3, 4]})
    bo = Viewer("bo", "team", frozenset({"vision", "maps"}))
    assert restrict_frame(frame, bo)["team"].to_list() == ["vision", "maps"]
    assert restrict_frame(frame, Viewer.everyone()).equals(frame)
    pool_wide = pl.DataFrame({"accelerator": ["h100"], "installed_chips": [8]})
    assert restrict_frame(pool_wide, bo).height == 0
    assert restrict_frame(pool_wide, Viewer("f", "finance")).height == 1


def test_restrict_showback_hides_other_teams_idle_and_pool_totals(billed_workspace):  # noqa: F811
    read = billed_workspace.read_table
    result = showback(
        read("usage_daily"),
        read("inventory"),
        read("billing"),
        read("price_book"),
        read("sku_catalog"),
        (date(2026, 10, 1),),
        ShowbackPolicy(),
    )
    ana = Viewer("ana", "team", frozenset({TEAM}))
    seen = restrict_showback(result, ana)
    assert set(seen.cells["team"]) == {TEAM}
    assert IDLE not in set(seen.cells["team"])
    assert seen.pools.height == 0 and seen.billing_cents == {}
    assert cost_totals(seen).total_usd < cost_totals(result).total_usd
    assert restrict_showback(result, Viewer("cfo", "finance")) is result


def _app(workspace, monkeypatch, user: dict[str, object] | None) -> AppTest:
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(workspace))
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    app.secrets["access"] = ACCESS
    if user is not None:
        app.user = user
    app.run()
    assert not app.exception, app.exception
    return app


def test_signed_out_sees_only_a_sign_in_button(billed_workspace, monkeypatch):  # noqa: F811
    app = _app(billed_workspace.root, monkeypatch, {"is_logged_in": False})
    assert [b.label for b in app.button] == ["Sign in"]
    assert not app.metric and not app.dataframe


def test_an_unknown_account_is_refused(billed_workspace, monkeypatch):  # noqa: F811
    app = _app(
        billed_workspace.root, monkeypatch, {"is_logged_in": True, "email": "eve@example.com"}
    )
    assert any("has no role" in e.value for e in app.error)
    assert not app.metric and not app.dataframe


def _costs_table(app: AppTest) -> pl.DataFrame:
    frame = app.dataframe[1].value  # trend, then the breakdown table
    return pl.from_pandas(frame) if not isinstance(frame, pl.DataFrame) else frame


def test_a_team_sees_its_own_costs_only_whatever_the_filter(billed_workspace, monkeypatch):  # noqa: F811
    app = _app(
        billed_workspace.root, monkeypatch, {"is_logged_in": True, "email": "ana@example.com"}
    )
    go_to(app, "costs")
    assert set(_costs_table(app)["team"]) == {TEAM}
    assert app.metric[1].label == "Idle cost" and app.metric[1].value == "$0"
    # The filter offers no other team, and asking for every team changes nothing.
    team_box = app.selectbox(key="shell_team")
    assert set(team_box.options) <= {"All", TEAM}
    team_box.set_value("All").run()
    assert not app.exception
    assert set(_costs_table(app)["team"]) == {TEAM}
    # Only the usage and costs pages exist for a team's viewer.
    for hidden in ("plan", "reclaim", "overview", "data"):
        go_to(app, hidden)
        assert [t.value for t in app.title] in (["Usage"], ["Costs"], [])


def test_a_team_cannot_ask_for_another_team_in_the_url(billed_workspace, monkeypatch):  # noqa: F811
    monkeypatch.setenv("WORKBENCH_WORKSPACE", str(billed_workspace.root))
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    app.secrets["access"] = ACCESS
    app.user = {"is_logged_in": True, "email": "ana@example.com"}
    app.query_params["team"] = "vision"
    app.run()
    go_to(app, "costs")
    assert set(_costs_table(app)["team"]) == {TEAM}


def test_finance_sees_every_team(billed_workspace, monkeypatch):  # noqa: F811
    app = _app(
        billed_workspace.root, monkeypatch, {"is_logged_in": True, "email": "cfo@example.com"}
    )
    go_to(app, "costs")
    teams = set(_costs_table(app)["team"])
    assert TEAM in teams and IDLE in teams and len(teams) > 3


def test_the_app_binds_to_this_machine_unless_told_otherwise(tmp_path):
    import inspect

    from workbench.cli import _streamlit_command, app_command

    assert inspect.signature(app_command).parameters["address"].default == "127.0.0.1"
    command = _streamlit_command(tmp_path, 8501, "127.0.0.1")
    assert command[command.index("--server.address") + 1] == "127.0.0.1"
    # No Streamlit config in the repository overrides the address.
    for config in ROOT.glob(".streamlit/*.toml"):
        assert "address" not in config.read_text()


def test_a_team_sees_its_own_usage_only(billed_workspace, monkeypatch):  # noqa: F811
    app = _app(
        billed_workspace.root, monkeypatch, {"is_logged_in": True, "email": "ana@example.com"}
    )
    go_to(app, "usage")
    assert [t.value for t in app.title] == ["Usage"]
    assert app.selectbox(key="shell_team").value == TEAM
    # Every table the page shows that has a team column holds this team only.
    for frame in app.dataframe:
        value = frame.value
        table = value if isinstance(value, pl.DataFrame) else pl.from_pandas(value)
        if "team" in table.columns:
            assert set(table["team"].drop_nulls()) <= {TEAM}
