"""The YAML layer under every config and policy file: line numbers, duplicate keys, plain words as strings."""

from __future__ import annotations

import pytest

from gateway.config.yaml_source import LineMap, YamlError, load_yaml_text

TEXT = """\
top:
  first: 1
  second:
    - {name: a}
    - name: b
      extra: yes
other: text
"""


def test_mappings_know_their_key_lines() -> None:
    data = load_yaml_text(TEXT, "f.yaml")
    assert isinstance(data, LineMap)
    assert data.key_lines == {"top": 1, "other": 7}
    top = data["top"]
    assert isinstance(top, LineMap)
    assert top.line == 2
    assert top.key_lines == {"first": 2, "second": 3}
    second = top["second"]
    assert [item.line for item in second] == [4, 5]
    assert second[1].key_lines == {"name": 5, "extra": 6}


def test_scalar_types() -> None:
    data = load_yaml_text("a: 1\nb: 1.5\nc: true\nd: False\ne: null\nf: 2024-01-02\ng: '1'\nh: 2024-01-02T03:04:05Z\n", "f.yaml")
    # As in YAML 1.2, dates and times stay text: a policy's `until` is checked (zone required) as written.
    assert data == {"a": 1, "b": 1.5, "c": True, "d": False, "e": None, "f": "2024-01-02", "g": "1", "h": "2024-01-02T03:04:05Z"}


@pytest.mark.parametrize("word", ["on", "off", "yes", "no", "On", "OFF", "y", "n"])
def test_yaml_11_boolean_words_stay_strings(word: str) -> None:
    assert load_yaml_text(f"mode: {word}\n", "f.yaml") == {"mode": word}


def test_duplicate_keys_are_errors_with_the_line() -> None:
    with pytest.raises(YamlError) as caught:
        load_yaml_text("a: 1\nb:\n  c: 1\n  c: 2\n", "f.yaml")
    assert str(caught.value) == "f.yaml:4: duplicate key 'c'"


def test_syntax_errors_name_file_and_line() -> None:
    with pytest.raises(YamlError) as caught:
        load_yaml_text("a: 1\nb: [1, 2\nc: 3\n", "f.yaml")
    assert str(caught.value).startswith("f.yaml:3: ")


def test_unsafe_tags_are_refused() -> None:
    with pytest.raises(YamlError):
        load_yaml_text("a: !!python/object/apply:os.system ['true']\n", "f.yaml")


def test_empty_document_is_none() -> None:
    assert load_yaml_text("", "f.yaml") is None
