"""Sign-in and this session's viewer (see :mod:`workbench.access` for the rules).

Sign-in is on when ``secrets.toml`` has an ``[access]`` role map (and an ``[auth]`` section
for ``st.login``); then a person who is not signed in sees only a sign-in button, and one the
role map does not know is refused. Without ``[access]`` the viewer sees everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from workbench.access import RoleMap, Viewer
from workbench.errors import WorkbenchError

__all__ = ["current_viewer"]


def _access_settings() -> Mapping[str, Any] | None:
    try:
        if "access" not in st.secrets:
            return None
        section = st.secrets["access"]
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return None
    return section.to_dict() if hasattr(section, "to_dict") else dict(section)


def current_viewer() -> Viewer:
    """The viewer of this session; stops the page with a sign-in button or a refusal."""
    settings = _access_settings()
    if settings is None:
        return Viewer.everyone()
    try:
        role_map = RoleMap.from_mapping(settings)
    except WorkbenchError as exc:
        st.error(exc.one_line())
        st.stop()
    if not st.user.is_logged_in:
        st.title("Fleet Workbench")
        st.write("Sign in to see the fleet's usage and costs.")
        st.button("Sign in", on_click=st.login, key="access_sign_in")
        st.stop()
    email = st.user.get("email")
    viewer = role_map.viewer_for(str(email) if email else None)
    if viewer is None:
        st.error(f"{email or 'This account'} has no role in this workbench: ask its owner.")
        st.button("Sign out", on_click=st.logout, key="access_sign_out")
        st.stop()
    return viewer
