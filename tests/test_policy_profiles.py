"""The command policy's profiles as data (no ChimeraX needed)."""
import json
import os
import re

from app.services.policy import profiles as policy


def test_profiles_are_configurable():
    profiles = policy.default_profiles(extra_viewer=["hbonds"], denied_viewer=["surface"])
    assert "hbonds" in profiles["viewer"].commands and "surface" not in profiles["viewer"].commands
    assert policy.default_profiles(allow_fetch=True)["viewer"].allow_fetch
    assert policy.default_profiles()["trusted"].restricted is False


def test_render_bound_and_rules_reach_the_agent_with_the_profile():
    viewer = policy.default_profiles(max_pixels=2048, render_max_pixels=1000 * 1000)["viewer"]
    wire = json.loads(viewer.wire)
    assert wire["limits"]["render_max_pixels"] == 1000 * 1000
    assert wire["limits"]["max_magnitude"] == policy.MAX_MAGNITUDE
    assert wire["bounds"]["save"]["width"] == [1, 2048]
    assert wire["bounds"]["lighting"]["ms_map_size"] == [16, 4096]        # as ChimeraX parses msMapSize
    assert wire["texts"]["label"]["text"] == [policy.LABEL_MAX_TEXT, "format"]
    assert "level" in wire["data_values"]["volume"]
    trusted = policy.default_profiles()["trusted"]
    assert not trusted.restricted and not trusted.limits and not trusted.bounds


def test_keywords_are_shown_as_users_type_them():
    assert policy.user_keyword("ms_map_size") == "msMapSize"
    assert policy.user_keyword("frames") == "frames"
    table = policy.markdown(policy.default_profiles()["viewer"])
    assert "| `msMapSize` of `lighting` | 16 to 4096 |" in table
    assert "RENDER_MAX_PIXELS" in table


def test_the_docs_list_the_viewer_profile_generated_from_the_code():
    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "policy.md")).read()
    block = re.search(r"<!-- viewer-profile:begin.*?-->\n(.*?)\n<!-- viewer-profile:end -->", readme, re.S)
    assert block, "docs/policy.md lacks the generated viewer profile block"
    assert block.group(1) == policy.markdown(policy.default_profiles()["viewer"])
