"""The documented verify recipe, run exactly as written, accepts our deliveries' signatures."""

from __future__ import annotations

import re
import time

import pytest

from service.webhooks.signing import new_secret, signature_header
from tests.webhooks.recipe import Verify, documented_recipes

RECIPES = documented_recipes()


def test_the_recipe_is_documented():
    assert RECIPES, "no verify_signature recipe found in the docs"


@pytest.mark.parametrize("verify", [v for _, v in RECIPES], ids=[d for d, _ in RECIPES])
def test_recipe_accepts_our_signature_and_nothing_else(verify: Verify):
    secret, body = new_secret(), b'{"id":"evt_1","type":"video.deleted","data":{"videoId":"v"}}'
    now = int(time.time())
    header = signature_header(secret, now, body)
    assert re.fullmatch(r"t=[0-9]+,v1=[0-9a-f]{64}", header)
    assert verify(secret, header, body) is True
    assert verify(secret, header, body + b" ") is False
    assert verify(new_secret(), header, body) is False
    assert verify(secret, signature_header(secret, now - 3600, body), body) is False, "a replay an hour old"
    for broken in ["", "t=abc,v1=00", "v1=" + header.split("v1=")[1], header.split(",")[0], "garbage"]:
        assert verify(secret, broken, body) is False
