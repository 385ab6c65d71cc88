from envtasks.masking import MASK, Masker, is_secret_key


def test_secret_key_names() -> None:
    for key in ("DB_PASSWORD", "api_token", "SECRET", "GPG_PRIVATE", "AWS_ACCESS_KEY", "ssh_key"):
        assert is_secret_key(key), key
    for key in ("KEYS_DIR", "HOST", "MONKEY_COUNT", "NAME"):
        assert not is_secret_key(key), key
    assert is_secret_key("DSN", ["dsn"])


def test_longest_secret_masked_whole() -> None:
    mask = Masker.of(["abc", "abcdef", ""])
    assert mask("x abcdef y abc") == f"x {MASK} y {MASK}"


def test_regex_characters_in_secrets() -> None:
    assert Masker.of(["a.b*(c"])("a.b*(c and axb") == f"{MASK} and axb"


def test_empty_masker_is_identity() -> None:
    assert Masker()("anything") == "anything"
