import itertools

import pytest

from indicators import (
    CREDIBILITY_DIGITS,
    DEFAULT_GRADES,
    RELIABILITY_LETTERS,
    GradeTable,
    GradeTableError,
    InvalidGrade,
    InvalidObservation,
    parse_grade,
)

GOOD_RELIABILITY = {"A": 1.0, "B": 0.8, "C": 0.6, "D": 0.4, "E": 0.3, "F": 0.1}
GOOD_CREDIBILITY = {"1": 1.0, "2": 0.9, "3": 0.7, "4": 0.5, "5": 0.25, "6": 0.2}


@pytest.mark.parametrize(
    ("text", "grade"), [("B2", "B2"), (" b2 ", "B2"), ("a1", "A1"), ("F6", "F6"), ("\tc3\n", "C3")]
)
def test_parse_grade_normalises(text, grade):
    assert parse_grade(text) == grade


def test_parse_grade_error_message():
    with pytest.raises(InvalidGrade) as info:
        parse_grade("G7")
    error = info.value
    assert isinstance(error, InvalidObservation)
    assert error.field == "grade"
    assert str(error) == (
        "grade: 'G7' is not an Admiralty grade: use a letter A–F (source reliability) "
        "and a digit 1–6 (credibility), e.g. 'B2'"
    )


@pytest.mark.parametrize("text", ["B7", "B0", "B", "2", "", "B22", "2B", "AA", "B 2", None, 3])
def test_parse_grade_refuses(text):
    with pytest.raises(InvalidGrade, match="is not an Admiralty grade"):
        parse_grade(text)


def test_default_weights():
    assert DEFAULT_GRADES.weight("A1") == 1.0
    assert DEFAULT_GRADES.weight("B2") == pytest.approx(0.7225)
    assert DEFAULT_GRADES.weight("c3") == pytest.approx(0.49)
    assert DEFAULT_GRADES.weight("A6") == pytest.approx(0.2)
    assert DEFAULT_GRADES.weight("F1") == pytest.approx(0.2)
    assert DEFAULT_GRADES.weight("F6") == pytest.approx(0.04)
    assert DEFAULT_GRADES.default == "B2"
    assert DEFAULT_GRADES.weight(None) == DEFAULT_GRADES.weight("B2")
    assert DEFAULT_GRADES.weight("") == DEFAULT_GRADES.weight("B2")


def test_default_factors_are_the_documented_ones():
    assert dict(DEFAULT_GRADES.reliability) == {
        "A": 1.0, "B": 0.85, "C": 0.7, "D": 0.5, "E": 0.3, "F": 0.2
    }  # fmt: skip
    assert dict(DEFAULT_GRADES.credibility) == {
        "1": 1.0, "2": 0.85, "3": 0.7, "4": 0.5, "5": 0.3, "6": 0.2
    }  # fmt: skip


def test_default_weights_strictly_decrease_down_letters_and_digits():
    for digit in CREDIBILITY_DIGITS:
        weights = [DEFAULT_GRADES.weight(letter + digit) for letter in RELIABILITY_LETTERS]
        assert all(a > b for a, b in itertools.pairwise(weights)), digit
    for letter in RELIABILITY_LETTERS:
        weights = [DEFAULT_GRADES.weight(letter + digit) for digit in CREDIBILITY_DIGITS]
        assert all(a > b for a, b in itertools.pairwise(weights)), letter
    for letter, digit in itertools.product(RELIABILITY_LETTERS, CREDIBILITY_DIGITS):
        assert 0 < DEFAULT_GRADES.weight(letter + digit) <= 1


def test_weight_refuses_a_bad_grade():
    with pytest.raises(InvalidGrade):
        DEFAULT_GRADES.weight("Z9")


def test_custom_table():
    table = GradeTable(GOOD_RELIABILITY, {int(k): v for k, v in GOOD_CREDIBILITY.items()}, "c3")
    assert table.default == "C3"
    assert table.weight("B3") == pytest.approx(0.56)
    assert table.weight(None) == pytest.approx(0.42)
    assert dict(table.credibility) == GOOD_CREDIBILITY


def test_table_is_immutable_and_hashable():
    table = GradeTable(dict(GOOD_RELIABILITY), GOOD_CREDIBILITY)
    with pytest.raises(TypeError):
        table.reliability["A"] = 0.5
    assert table == GradeTable(GOOD_RELIABILITY, GOOD_CREDIBILITY)
    assert hash(table) == hash(GradeTable(GOOD_RELIABILITY, GOOD_CREDIBILITY))
    assert table != DEFAULT_GRADES


def with_change(mapping, key, value):
    changed = dict(mapping)
    if value is None:
        del changed[key]
    else:
        changed[key] = value
    return changed


@pytest.mark.parametrize(
    ("reliability", "credibility", "message"),
    [
        (
            with_change(GOOD_RELIABILITY, "F", None),
            GOOD_CREDIBILITY,
            "reliability: missing 'F'; give all of ('A', 'B', 'C', 'D', 'E', 'F')",
        ),
        (
            GOOD_RELIABILITY,
            with_change(GOOD_CREDIBILITY, "6", None),
            "credibility: missing '6'",
        ),
        (
            with_change(GOOD_RELIABILITY, "G", 0.1),
            GOOD_CREDIBILITY,
            "reliability['G']: not a reliability key; use 'A', 'B', 'C', 'D', 'E', 'F'",
        ),
        (
            with_change(GOOD_RELIABILITY, "A", 0.9),
            GOOD_CREDIBILITY,
            "reliability['A']: must be 1 so that A1 is plain Bayes, got 0.9",
        ),
        (
            GOOD_RELIABILITY,
            with_change(GOOD_CREDIBILITY, "1", 0.95),
            "credibility['1']: must be 1 so that A1 is plain Bayes, got 0.95",
        ),
        (
            with_change(GOOD_RELIABILITY, "D", 0.0),
            GOOD_CREDIBILITY,
            "reliability['D']: must be in (0, 1], got 0.0",
        ),
        (
            GOOD_RELIABILITY,
            with_change(GOOD_CREDIBILITY, "3", 1.5),
            "credibility['3']: must be in (0, 1], got 1.5",
        ),
        (
            GOOD_RELIABILITY,
            with_change(GOOD_CREDIBILITY, "3", float("nan")),
            "credibility['3']: must be in (0, 1], got nan",
        ),
        (
            with_change(GOOD_RELIABILITY, "C", True),
            GOOD_CREDIBILITY,
            "reliability['C']: must be a number, got True",
        ),
        (
            with_change(GOOD_RELIABILITY, "E", 0.5),
            GOOD_CREDIBILITY,
            "reliability['E']: 0.5 exceeds reliability['D'] = 0.4; "
            "a lower grade must not weigh more",
        ),
        (
            GOOD_RELIABILITY,
            with_change(GOOD_CREDIBILITY, "6", 0.3),
            "credibility['6']: 0.3 exceeds credibility['5'] = 0.25",
        ),
        ("ABCDEF", GOOD_CREDIBILITY, "reliability: expected a mapping"),
    ],
)
def test_table_validation_names_the_key(reliability, credibility, message):
    with pytest.raises(GradeTableError) as info:
        GradeTable(reliability, credibility)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(message)


def test_table_accepts_equal_neighbours():
    flat = GradeTable(with_change(GOOD_RELIABILITY, "E", 0.4), GOOD_CREDIBILITY)
    assert flat.weight("D1") == flat.weight("E1") == 0.4


def test_table_refuses_a_bad_default():
    with pytest.raises(GradeTableError, match="^default: 'Z1' is not an Admiralty grade"):
        GradeTable(GOOD_RELIABILITY, GOOD_CREDIBILITY, default="Z1")


def test_table_refuses_a_key_given_twice():
    with pytest.raises(GradeTableError, match=r"^credibility\[1\]: given twice"):
        GradeTable(GOOD_RELIABILITY, {**GOOD_CREDIBILITY, 1: 1.0})


def test_from_mapping_reads_json_like_configuration():
    table = GradeTable.from_mapping(
        {"reliability": GOOD_RELIABILITY, "credibility": GOOD_CREDIBILITY, "default": "a2"}
    )
    assert table.weight(None) == pytest.approx(0.9)
    assert GradeTable.from_mapping(table.to_dict()) == table


def test_from_mapping_keeps_default_sections():
    table = GradeTable.from_mapping({"credibility": {str(i): 1.0 for i in range(1, 7)}})
    assert table.reliability == DEFAULT_GRADES.reliability
    assert table.weight("C6") == pytest.approx(0.7)
    assert GradeTable.from_mapping({}) == DEFAULT_GRADES


def test_from_mapping_refuses_unknown_sections():
    with pytest.raises(GradeTableError) as info:
        GradeTable.from_mapping({"reliabilty": GOOD_RELIABILITY})
    assert str(info.value) == (
        "'reliabilty': not a grade-table key; use 'reliability', 'credibility', 'default'; "
        "did you mean 'reliability'?"
    )
    with pytest.raises(GradeTableError, match="expected a mapping"):
        GradeTable.from_mapping(["A1"])


def test_to_dict_is_plain_data():
    data = DEFAULT_GRADES.to_dict()
    assert data["default"] == "B2"
    assert data["reliability"]["F"] == 0.2
    assert data["credibility"]["6"] == 0.2
    assert type(data["reliability"]) is dict
