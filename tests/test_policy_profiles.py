"""The command policy's profiles as data (no ChimeraX needed)."""
import os
import re

from app.services import policy


def test_profiles_are_configurable():
    profiles = policy.default_profiles(extra_viewer=["hbonds"], denied_viewer=["surface"])
    assert "hbonds" in profiles["viewer"].commands and "surface" not in profiles["viewer"].commands
    assert policy.default_profiles(allow_fetch=True)["viewer"].allow_fetch
    assert policy.default_profiles()["trusted"].restricted is False


def test_readme_lists_the_viewer_profile_generated_from_the_code():
    readme = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")).read()
    block = re.search(r"<!-- viewer-profile:begin.*?-->\n(.*?)\n<!-- viewer-profile:end -->", readme, re.S)
    assert block, "README lacks the generated viewer profile block"
    assert block.group(1) == policy.markdown(policy.default_profiles()["viewer"])
