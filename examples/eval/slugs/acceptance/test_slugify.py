"""Hidden acceptance tests of the slugs case: never shown to the run."""

from slugs import slugify


def test_words_are_lower_cased_and_joined_by_hyphens() -> None:
    assert slugify("Hello, World!") == "hello-world"


def test_accents_become_plain_letters() -> None:
    assert slugify("Crème Brûlée") == "creme-brulee"


def test_runs_of_other_characters_become_one_hyphen() -> None:
    assert slugify("a  --  b__c") == "a-b-c"


def test_no_hyphen_at_either_end_and_nothing_left_is_empty() -> None:
    assert slugify("--Hi there--") == "hi-there"
    assert slugify("!!!") == ""
    assert slugify("") == ""


def test_a_long_slug_is_cut_at_a_hyphen() -> None:
    assert slugify("the quick brown fox jumps", 12) == "the-quick"
    assert slugify("the quick brown fox", 9) == "the-quick"


def test_a_single_long_word_is_cut() -> None:
    assert slugify("abcdefghij", 4) == "abcd"


def test_the_default_length_is_40() -> None:
    slug = slugify("word " * 30)
    assert len(slug) <= 40 and not slug.endswith("-") and slug.startswith("word-word")
