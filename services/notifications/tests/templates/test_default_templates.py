"""The shipped templates compile, cover every outbound template the offers catalogue names (same
channel, same category), fit an SMS, carry the marketing opt-out, and a bad file stops loading
with the file and the field named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from zhike_notifications.domain.model import Category, Channel
from zhike_notifications.domain.templates import SMS_OPT_OUT, CompiledTemplate, sms_length
from zhike_notifications.templates import DEFAULT_DIRECTORY, TemplatesError, load_templates

REPO = Path(__file__).resolve().parents[4]
OFFERS_CATALOGUE = REPO / "services" / "offers" / "src" / "zhike_offers" / "catalogue"
SIGNATURE = "【知客银行】"  # the sender adds the bank's signature; it counts toward the length
SHIPPED = {
    "offer_usd_fx_wealth_sms_v1",
    "offer_balanced_equity_fund_email_v1",
    "offer_fx_travel_card_push_v1",
    "offer_mortgage_refinance_email_v1",
    "offer_platinum_upgrade_email_v1",
    "service_risk_assessment_push_v1",
    "otp_sms_v1",
    "fraud_alert_sms_v1",
    "deposit_maturity_sms_v1",
    "welcome_email_v1",
    "card_due_inbox_v1",
    "offer_inbox_generic_v1",
}


@pytest.fixture(scope="module")
def templates() -> dict[str, CompiledTemplate]:
    return load_templates()


def sample_values(template: CompiledTemplate) -> dict[str, str]:
    return {name: spec.sample for name, spec in template.draft.fields.items()}


def test_every_shipped_template_compiles_in_both_languages(
    templates: dict[str, CompiledTemplate],
) -> None:
    assert set(templates) == SHIPPED
    for template in templates.values():
        assert set(template.samples) == {"zh-CN", "en"}, template.template_id
        if template.draft.channel is Channel.EMAIL:
            assert all(rendered.subject for rendered in template.samples.values())


def test_every_outbound_template_of_the_offers_catalogue_is_shipped_with_its_channel_and_category(
    templates: dict[str, CompiledTemplate],
) -> None:
    referenced = 0
    for path in sorted(OFFERS_CATALOGUE.glob("*.yaml")):
        offer = yaml.safe_load(path.read_text(encoding="utf-8"))
        for channel, template_id in (offer.get("templates") or {}).items():
            if channel not in {c.value for c in Channel if c.outbound}:
                continue  # mobile_app cards are the app's, not sent by notifications
            referenced += 1
            assert template_id in templates, f"{path.name}: {template_id}"
            draft = templates[template_id].draft
            assert draft.channel is Channel(channel), template_id
            assert draft.category is Category(offer["category"]), template_id
    assert referenced >= 6


def test_marketing_sms_end_with_the_td_opt_out_when_rendered(
    templates: dict[str, CompiledTemplate],
) -> None:
    marketing_sms = [
        t
        for t in templates.values()
        if t.draft.channel is Channel.SMS and t.draft.category is Category.MARKETING
    ]
    assert [t.template_id for t in marketing_sms] == ["offer_usd_fx_wealth_sms_v1"]
    for template in marketing_sms:
        for language in ("zh-CN", "en"):
            rendered = template.render(language, sample_values(template))
            assert rendered.body.endswith(SMS_OPT_OUT[language])


def test_sms_templates_fit_one_message_in_chinese_and_two_in_english(
    templates: dict[str, CompiledTemplate],
) -> None:
    for template in templates.values():
        if template.draft.channel is not Channel.SMS:
            continue
        zh, en = template.samples["zh-CN"].body, template.samples["en"].body
        assert sms_length(zh, SIGNATURE).segments == 1, template.template_id
        assert sms_length(en, SIGNATURE).segments <= 2, template.template_id


def test_the_fx_sms_offers_the_usd_product_without_personal_fields(
    templates: dict[str, CompiledTemplate],
) -> None:
    fx = templates["offer_usd_fx_wealth_sms_v1"]
    assert (fx.draft.topic, dict(fx.draft.fields)) == ("wealth", {})
    body = fx.render("zh-CN", {}).body
    assert body.startswith("尊敬的客户，您可选购美元理财产品，5,000 美元起购")
    assert "理财非存款" in body


def test_the_passcode_is_shown_and_the_card_number_is_masked(
    templates: dict[str, CompiledTemplate],
) -> None:
    otp = templates["otp_sms_v1"].render("zh-CN", {"code": "731204"})
    assert "731204" in otp.body
    alert = templates["fraud_alert_sms_v1"].render(
        "en",
        {"card": "6222020000001111", "merchant": "LUCKIN", "currency": "CNY", "amount": "88.00"},
    )
    assert "****1111" in alert.body
    assert "6222020000001111" not in alert.body
    assert "88.00 at LUCKIN" in alert.body


def test_a_bad_file_names_the_file_and_the_field(tmp_path: Path) -> None:
    otp = (DEFAULT_DIRECTORY / "otp_sms_v1.yaml").read_text(encoding="utf-8")
    shutil.copy(DEFAULT_DIRECTORY / "welcome_email_v1.yaml", tmp_path)
    # |unmasked on a field no longer declared safe
    (tmp_path / "otp_sms_v1.yaml").write_text(
        otp.replace("safe: true", "safe: false"), encoding="utf-8"
    )
    # the same template id again, in a .yml file
    (tmp_path / "otp_sms_v1.yml").write_text(otp, encoding="utf-8")
    # an unknown channel, and a file named after another id
    (tmp_path / "fax_v1.yaml").write_text(
        otp.replace("channel: sms", "channel: fax").replace(
            "template_id: otp_sms_v1", "template_id: fax_v1"
        ),
        encoding="utf-8",
    )
    (tmp_path / "moved.yaml").write_text(otp, encoding="utf-8")
    (tmp_path / "broken.yaml").write_text("template_id: [unclosed\n", encoding="utf-8")

    with pytest.raises(TemplatesError) as raised:
        load_templates(tmp_path)

    found = {(Path(p.source).name, p.field) for p in raised.value.problems}
    assert found == {
        ("broken.yaml", "(file)"),
        ("fax_v1.yaml", "channel"),
        ("moved.yaml", "template_id"),
        ("otp_sms_v1.yaml", "bodies.zh-CN"),
        ("otp_sms_v1.yaml", "bodies.en"),
        ("otp_sms_v1.yml", "template_id"),
    }
    assert "already defined in otp_sms_v1.yaml" in str(raised.value)
    # Each problem reaches a gRPC error or a log line with its file: "<file>: <field>".
    assert any(v.field.endswith("fax_v1.yaml: channel") for v in raised.value.violations)


def test_a_field_setting_that_is_not_one_is_named(tmp_path: Path) -> None:
    otp = (DEFAULT_DIRECTORY / "otp_sms_v1.yaml").read_text(encoding="utf-8")
    (tmp_path / "otp_sms_v1.yaml").write_text(
        otp.replace('sample: "482916"', "sample: 482916, secret: yes"), encoding="utf-8"
    )
    with pytest.raises(TemplatesError) as raised:
        load_templates(tmp_path)
    assert {p.field for p in raised.value.problems} == {
        "fields.code.sample",
        "fields.code.secret",
    }


def test_a_missing_or_empty_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(TemplatesError, match="not a directory"):
        load_templates(tmp_path / "nowhere")
    with pytest.raises(TemplatesError, match=r"holds no \.yaml file"):
        load_templates(tmp_path)
