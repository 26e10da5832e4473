"""The view settings: trusted proxies and the view salt are checked at start-up."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from config.settings import SettingsError, load_settings


def test_trusted_proxies_are_parsed(monkeypatch):
    monkeypatch.setenv("TRUSTED_PROXIES", " 10.0.0.0/8, 127.0.0.1 ,::1")
    settings = load_settings(_env_file=None)
    assert settings.trusted_proxy_networks == (ip_network("10.0.0.0/8"), ip_network("127.0.0.1"), ip_network("::1"))


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("TRUSTED_PROXIES", "10.0.0.0/8,proxy.local", "invalid TRUSTED_PROXIES: 'proxy.local' is not an IP"),
        ("VIEW_SALT", "too short", "invalid VIEW_SALT: must be at least 16 characters"),
    ],
)
def test_bad_view_settings_stop_start_up(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=message):
        load_settings(_env_file=None)


def test_no_salt_by_default(monkeypatch):
    monkeypatch.delenv("VIEW_SALT", raising=False)
    assert load_settings(_env_file=None).view_salt is None
