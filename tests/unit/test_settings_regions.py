"""Web seeds name the bucket's own region: a bucket scope may say where the bucket lives."""

from __future__ import annotations

import pytest

from s3torrent.errors import InvalidInput
from s3torrent.policy import expand_web_seed, torrent_options
from s3torrent.settings import Settings


def settings(**values: object) -> Settings:
    return Settings.from_mapping(
        {
            "region": "eu-west-1",
            "buckets": [
                {"name": "here"},
                {"name": "far", "prefix": "pub/", "region": "ap-southeast-2"},
                {"name": "china", "region": "cn-north-1"},
                {"name": "dotted.far", "region": "us-west-2"},
            ],
            **values,
        }
    )


def test_each_bucket_url_is_in_the_bucket_s_own_region() -> None:
    configured = settings()
    assert configured.bucket_url("here") == "https://here.s3.eu-west-1.amazonaws.com"
    assert configured.bucket_url("far") == "https://far.s3.ap-southeast-2.amazonaws.com"
    # China regions answer under their own DNS suffix.
    assert configured.bucket_url("china") == "https://china.s3.cn-north-1.amazonaws.com.cn"
    # A dotted name stays path-style (TLS), on its own region's endpoint.
    assert configured.bucket_url("dotted.far") == "https://s3.us-west-2.amazonaws.com/dotted.far"
    # A bucket outside the scopes (or one with no region) is in the deployment's region.
    assert configured.bucket_url("other") == "https://other.s3.eu-west-1.amazonaws.com"


def test_a_deployment_in_china_uses_the_china_suffix() -> None:
    china = Settings(region="cn-northwest-1")
    assert china.s3_endpoint == "https://s3.cn-northwest-1.amazonaws.com.cn"
    assert china.bucket_url("b-1") == "https://b-1.s3.cn-northwest-1.amazonaws.com.cn"


def test_web_seeds_and_their_placeholders_follow_the_bucket() -> None:
    configured = settings()
    options = torrent_options(configured, "far", "pub/a b.bin")
    assert options.web_seeds == ("https://far.s3.ap-southeast-2.amazonaws.com/pub/",)
    template = "{endpoint}/{bucket}/{key}?r={region}"
    assert expand_web_seed(template, configured, "china", "k") == (
        "https://s3.cn-north-1.amazonaws.com.cn/china/k?r=cn-north-1"
    )
    assert expand_web_seed(template, configured, "here", "k") == (
        "https://s3.eu-west-1.amazonaws.com/here/k?r=eu-west-1"
    )


def test_an_endpoint_url_wins_over_any_region() -> None:
    store = settings(endpoint_url="https://rgw.example.net/")
    assert store.bucket_url("far") == "https://rgw.example.net/far"


def test_region_survives_the_environment_and_is_checked() -> None:
    configured = settings()
    assert Settings.from_env(configured.to_env()) == configured
    with pytest.raises(InvalidInput, match="region"):
        Settings.from_mapping({"buckets": [{"name": "far", "region": "Mars North"}]})


def test_a_scope_without_a_region_reads_as_before_in_the_environment() -> None:
    env = Settings.from_mapping({"buckets": [{"name": "here", "prefix": "p/"}]}).to_env()
    assert env["S3TORRENT_BUCKETS"] == '[{"name": "here", "prefix": "p/"}]'
