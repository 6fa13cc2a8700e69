import pytest

from indicators import (
    DEFAULT_CATALOG_PATH,
    KINDS,
    Catalog,
    CatalogError,
    Indicator,
    InvalidObservation,
    UnknownIndicator,
    load_catalog,
)

EXPECTED_KINDS = {
    "joint_exercise": "count",
    "joint_patrol": "count",
    "missile_defense_exercise": "count",
    "sanctions_action": "count",
    "new_theatre_exercise": "count",
    "sensitive_tech_deal": "count",
    "sanctions_relief_russia": "count",
    "us_china_cooperation": "count",
    "crisis_coordination": "count",
    "satellite_cueing": "milestone",
    "radar_coordination": "milestone",
    "early_warning_integration": "milestone",
    "joint_command": "milestone",
    "basing_rights": "milestone",
    "nuclear_umbrella": "milestone",
    "dual_use_trade_growth": "signal",
    "sanctions_on_russia": "level",
}


def test_every_registered_kind_implements_the_whole_interface():
    from indicators.kinds import Kind, get_kind

    required = ("evidence", "prior", "log_marginal", "oracle_log_marginal", "posterior_mean",
                "regime_statistics", "features", "conditional_draw", "predictive")
    for name in KINDS:
        kind = get_kind(name)
        assert kind.lookup_name == name
        missing = [m for m in required if getattr(type(kind), m) is getattr(Kind, m)]
        assert not missing, f"{name} does not implement {missing}"
    assert [get_kind(n).rank for n in KINDS] == sorted(get_kind(n).rank for n in KINDS)


def test_registering_a_kind_twice_is_refused():
    from indicators.kinds import register
    from indicators.kinds.count import Count

    with pytest.raises(ValueError, match="registered twice"):
        register(type("Again", (Count,), {}))


def test_an_unknown_kind_names_the_registered_ones():
    from indicators.kinds import get_kind

    with pytest.raises(CatalogError, match="'milestone', 'signal', 'level'.*did you mean"):
        get_kind("levle")


def test_bundled_catalog_has_every_required_indicator(catalog):
    assert {ind_id: ind.kind for ind_id, ind in catalog.items()} == EXPECTED_KINDS
    assert DEFAULT_CATALOG_PATH.name == "catalog.yaml"


def test_bundled_catalog_entries_are_documented(catalog):
    for indicator in catalog.values():
        assert indicator.name.strip(), indicator.id
        assert len(indicator.description) > 40, indicator.id
        assert len(indicator.coding) > 60, indicator.id
        if indicator.kind == "count":
            assert indicator.unit, indicator.id


def test_signal_entry(catalog):
    signal = catalog["dual_use_trade_growth"]
    assert signal.unit == "%"
    assert signal.noise_sd == 25.0
    assert isinstance(signal.noise_sd, float)
    assert all(ind.noise_sd is None for ind in catalog.values() if ind.kind != "signal")


def test_catalog_is_a_read_only_mapping(catalog):
    assert len(catalog) == 17
    assert "joint_patrol" in catalog
    assert "nope" not in catalog
    assert catalog.ids[0] == "joint_exercise"
    assert [ind.id for ind in catalog.of_kind("signal")] == ["dual_use_trade_growth"]
    level = catalog["sanctions_on_russia"]
    assert [ind.id for ind in catalog.of_kind("level")] == ["sanctions_on_russia"]
    assert level.levels == ("in_place", "partly_lifted", "fully_lifted")
    assert level.to_dict()["levels"] == list(level.levels)
    with pytest.raises(KeyError):
        catalog["nope"]
    assert catalog.get("nope") is None


def test_get_or_raise_returns_the_indicator(catalog):
    assert catalog.get_or_raise("joint_patrol") is catalog["joint_patrol"]


def test_get_or_raise_suggests_the_closest_id(catalog):
    with pytest.raises(UnknownIndicator) as info:
        catalog.get_or_raise("joint_exercize")
    error = info.value
    assert isinstance(error, InvalidObservation)
    assert isinstance(error, ValueError)
    assert error.field == "indicator"
    assert error.reason == "'joint_exercize' is not in the catalog; did you mean 'joint_exercise'?"
    assert str(error) == (
        "indicator: 'joint_exercize' is not in the catalog; did you mean 'joint_exercise'?"
    )


def test_get_or_raise_names_the_field_and_lists_ids_without_a_close_match():
    small = Catalog([Indicator("alpha", "count", "Alpha"), Indicator("beta", "count", "Beta")])
    with pytest.raises(UnknownIndicator) as info:
        small.get_or_raise("zzz", field="indicators.zzz")
    assert str(info.value) == "indicators.zzz: 'zzz' is not in the catalog; known ids: alpha, beta"


def test_indicator_requires_noise_sd_for_a_signal():
    with pytest.raises(CatalogError) as info:
        Indicator("trade", "signal", "Trade", unit="%")
    assert info.value.field == "noise_sd"
    assert str(info.value) == (
        "indicator 'trade': noise_sd: a signal needs a known noise sd > 0 "
        "(its measurement error, in %); got None"
    )
    with pytest.raises(CatalogError, match="noise sd > 0"):
        Indicator("trade", "signal", "Trade", noise_sd=0.0)
    with pytest.raises(CatalogError, match="noise sd > 0"):
        Indicator("trade", "signal", "Trade", noise_sd=float("nan"))


def test_indicator_refuses_noise_sd_outside_signals():
    with pytest.raises(CatalogError) as info:
        Indicator("drill", "count", "Drill", noise_sd=1.0)
    assert str(info.value) == (
        "indicator 'drill': noise_sd: only a signal has a noise sd; remove it from this count"
    )


def test_indicator_refuses_an_unknown_kind_with_a_suggestion():
    with pytest.raises(CatalogError) as info:
        Indicator("drill", "counts", "Drill")
    assert str(info.value) == (
        "indicator 'drill': kind: 'counts' is not a kind; use one of 'count', 'milestone', "
        "'signal', 'level'; did you mean 'count'?"
    )


@pytest.mark.parametrize("bad_id", ["Joint", "joint-exercise", "1drill", "", "a b"])
def test_indicator_refuses_bad_ids(bad_id):
    with pytest.raises(CatalogError, match="id: use lower-case letters"):
        Indicator(bad_id, "count", "Drill")


def test_indicator_requires_a_name():
    with pytest.raises(CatalogError, match="indicator 'drill': name: is required"):
        Indicator("drill", "count", "  ")


def test_catalog_refuses_duplicate_ids():
    with pytest.raises(CatalogError, match="'a' is defined twice"):
        Catalog([Indicator("a", "count", "A"), Indicator("a", "count", "A")])


def test_with_extra_adds_inline_indicators_without_changing_the_original(catalog):
    inline = Indicator("early_warning_link", "milestone", "Shared early-warning link")
    extended = catalog.with_extra([inline])
    assert extended["early_warning_link"] is inline
    assert len(extended) == len(catalog) + 1
    assert "early_warning_link" not in catalog


def test_with_extra_accepts_an_identical_repeat(catalog):
    same = Indicator(**catalog["joint_patrol"].to_dict())
    assert catalog.with_extra([same])["joint_patrol"] == catalog["joint_patrol"]


def test_with_extra_refuses_a_conflicting_definition(catalog):
    clash = Indicator("joint_patrol", "milestone", catalog["joint_patrol"].name)
    with pytest.raises(CatalogError) as info:
        catalog.with_extra([clash])
    assert str(info.value) == (
        "indicator 'joint_patrol' is already defined with a different kind, unit, "
        "description, coding; use the existing definition (drop the inline one) or "
        "choose another id"
    )


def test_with_extra_refuses_conflicts_among_the_extras():
    base = Catalog()
    with pytest.raises(CatalogError, match="different name"):
        base.with_extra([Indicator("x", "count", "X"), Indicator("x", "count", "Y")])


def write(tmp_path, text):
    path = tmp_path / "catalog.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_catalog_from_a_file(tmp_path):
    path = write(
        tmp_path,
        "indicators:\n"
        "  - {id: drill, kind: count, name: Drill, unit: drills}\n"
        "  - {id: trade, kind: signal, name: Trade, noise_sd: 2}\n",
    )
    loaded = load_catalog(path)
    assert loaded.ids == ("drill", "trade")
    assert loaded["trade"].noise_sd == 2.0
    assert loaded["drill"].unit == "drills"


def test_load_catalog_names_file_entry_and_unknown_key(tmp_path):
    path = write(tmp_path, "indicators:\n  - {id: drill, kind: count, nam: Drill}\n")
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert str(info.value) == (
        "catalog.yaml: indicators[0] ('drill'): nam: unknown key; did you mean 'name'?"
    )


def test_load_catalog_names_a_missing_key(tmp_path):
    path = write(tmp_path, "indicators:\n  - {id: a, kind: count, name: A}\n  - {id: b}\n")
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert str(info.value) == "catalog.yaml: indicators[1] ('b'): kind: is required"


def test_load_catalog_names_the_entry_of_an_invalid_definition(tmp_path):
    path = write(tmp_path, "indicators:\n  - {id: trade, kind: signal, name: Trade}\n")
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert str(info.value).startswith(
        "catalog.yaml: indicators[0]: indicator 'trade': noise_sd: a signal needs"
    )
    assert info.value.field == "noise_sd"


def test_load_catalog_refuses_duplicate_ids(tmp_path):
    path = write(
        tmp_path,
        "indicators:\n  - {id: a, kind: count, name: A}\n  - {id: a, kind: count, name: B}\n",
    )
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert str(info.value) == (
        "catalog.yaml: indicators[1] ('a'): id: 'a' is already used by indicators[0]"
    )


def test_load_catalog_refuses_wrong_types(tmp_path):
    path = write(tmp_path, "indicators:\n  - {id: a, kind: count, name: 5}\n")
    with pytest.raises(CatalogError, match=r"indicators\[0\] \('a'\): name: input should be"):
        load_catalog(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("indicators: [\n", "catalog.yaml: not valid YAML (line 2)"),
        ("- just a list\n", "catalog.yaml: expected a mapping with an 'indicators:' list"),
        ("indicator: []\n", "catalog.yaml: indicator: unknown key; did you mean 'indicators'?"),
        ("indicators:\n  - drill\n", "catalog.yaml: indicators[0]: expected a mapping"),
    ],
)
def test_load_catalog_file_level_errors(tmp_path, text, message):
    with pytest.raises(CatalogError) as info:
        load_catalog(write(tmp_path, text))
    assert str(info.value).startswith(message)
