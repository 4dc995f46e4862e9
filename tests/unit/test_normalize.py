"""Phone and email normalisation."""

import pytest

from audience.contacts.normalize import normalize_email, normalize_phone, search_query
from audience.errors import ValidationError


@pytest.mark.parametrize("raw", ["0812-3456-7890", "+62 812 3456 7890", "6281234567890", "(0812) 3456.7890"])
def test_indonesian_forms_become_one_e164_number(raw):
    phone = normalize_phone(raw, "ID")
    assert phone.e164 == "+6281234567890"
    assert phone.country == "ID"


def test_international_number_ignores_the_default_country():
    assert normalize_phone("+44 20 7946 0958", "ID").e164 == "+442079460958"


def test_national_number_is_read_in_the_default_country():
    assert normalize_phone("(415) 555-2671", "US").e164 == "+14155552671"


@pytest.mark.parametrize("raw", ["12", "call me", "+62 812", "0812-3456-7890-1234-5678-9012-3456-78"])
def test_invalid_phone_is_rejected_naming_the_value(raw):
    with pytest.raises(ValidationError) as caught:
        normalize_phone(raw, "ID")
    assert caught.value.fields[0]["field"] == "phone"
    assert caught.value.fields[0]["value"] == raw


def test_email_is_lower_cased_and_validated_without_dns():
    assert normalize_email("  Sari.W@Example.COM ") == "sari.w@example.com"
    with pytest.raises(ValidationError) as caught:
        normalize_email("sari@@example")
    assert caught.value.fields[0]["value"] == "sari@@example"


def test_search_query_folds_accents_and_keeps_phone_digits():
    assert search_query("Zoë ") == "zoe"
    assert search_query("+62 812-34") == "6281234"


def test_national_digits_agrees_with_a_full_parse_for_every_region():
    import phonenumbers

    from audience.contacts.normalize import national_digits

    numbers = [
        phonenumbers.example_number_for_type(region, kind)
        for region in phonenumbers.SUPPORTED_REGIONS
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
    ]
    numbers += [
        phonenumbers.example_number_for_non_geo_entity(cc) for cc in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS
    ]
    e164 = [phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164) for n in numbers if n is not None]
    assert len(e164) > 400
    assert "+390212345678" in e164  # Italy keeps its leading zero in E.164
    for phone in e164:
        assert national_digits(phone) == str(phonenumbers.parse(phone).national_number), phone
