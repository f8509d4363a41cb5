import pytest

from recorder.rtmp.access import AccessPolicy, Refused, parse_publish


def test_the_query_is_split_off_the_stream_key():
    p = parse_publish("live", "glasses-1?secret=s3cr%20t&x=1")
    assert (p.app, p.stream_key, p.params) == ("live", "glasses-1", {"secret": "s3cr t", "x": "1"})


@pytest.mark.parametrize("name", ["", "..", ".", "a/b", "a b", "x" * 129, "é", "?secret=x"])
def test_a_key_that_cannot_name_a_folder_is_refused(name):
    with pytest.raises(Refused, match="invalid stream key"):
        parse_publish("live", name)


def test_a_bad_application_name_is_refused():
    with pytest.raises(Refused, match="invalid application name"):
        parse_publish("../etc", "key")


def test_an_open_policy_lets_anyone_publish():
    AccessPolicy().check(parse_publish("live", "anything"))
    assert AccessPolicy().open


def test_the_allowlist_admits_only_its_keys():
    policy = AccessPolicy(allowed_keys=frozenset({"a", "b"}))
    policy.check(parse_publish("live", "a"))
    with pytest.raises(Refused, match="'c' is not allowed"):
        policy.check(parse_publish("live", "c"))


@pytest.mark.parametrize("name", ["k", "k?secret=", "k?secret=wrong", "k?Secret=right"])
def test_the_secret_must_be_given_exactly(name):
    with pytest.raises(Refused, match="secret"):
        AccessPolicy(secret="right").check(parse_publish("live", name))
    AccessPolicy(secret="right").check(parse_publish("live", "k?secret=right"))
