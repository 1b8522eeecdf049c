"""Templates: refused when saved (named field and line), masked by default, every marketing
message with its opt-out, SMS length counted as the gateways bill it."""

from __future__ import annotations

from typing import Any

import pytest

from zhike_notifications.domain.model import Category, Channel
from zhike_notifications.domain.templates import (
    FieldKind,
    FieldSpec,
    RenderFailed,
    SmsLength,
    TemplateDraft,
    TemplateRefused,
    compile_template,
    sms_length,
)
from zhike_runtime.errors import InvalidArgument

FIELDS = {
    "name": FieldSpec("刘建军", FieldKind.NAME, safe=True),
    "account": FieldSpec("6222020200112233", FieldKind.ACCOUNT),
    "product": FieldSpec("美元理财", safe=True),
    "phone": FieldSpec("+8613812345678", FieldKind.PHONE),
}
VALUES = {
    "name": "王芳",
    "account": "6222020200998877",
    "product": "USD wealth 6M",
    "phone": "+8613900001111",
}


def draft(**fields: Any) -> TemplateDraft:
    base: dict[str, Any] = {
        "template_id": "offer_usd_fx_wealth_sms_v1",
        "channel": Channel.SMS,
        "category": Category.MARKETING,
        "topic": "wealth",
        "bodies": {
            "zh-CN": "尊敬的{{ name|unmasked }}，您尾号{{ account }}的账户可购买{{ product|unmasked }}。",
            "en": "Dear {{ name|unmasked }}, {{ product|unmasked }} is open to account {{ account }}.",
        },
        "fields": FIELDS,
    }
    base.update(fields)
    return TemplateDraft(**base)


def refusal(**fields: Any) -> set[tuple[str, str]]:
    with pytest.raises(TemplateRefused) as raised:
        compile_template(draft(**fields))
    return {(v.field, v.description) for v in raised.value.violations}


def test_values_are_masked_unless_unmasked_and_declared_safe() -> None:
    rendered = compile_template(draft()).render("zh-CN", VALUES)
    assert rendered.body == "尊敬的王芳，您尾号****8877的账户可购买USD wealth 6M。回复TD退订"
    assert "6222020200998877" not in rendered.body


@pytest.mark.parametrize(
    ("kind", "value", "masked"),
    [
        (FieldKind.TEXT, "anything at all", "****"),
        (FieldKind.NAME, "刘建军", "刘**"),
        (FieldKind.PHONE, "+8613812345678", "+86138****5678"),
        (FieldKind.EMAIL, "zhang.wei@example.com", "z***@example.com"),
        (FieldKind.ID_NUMBER, "11010519491231002X", "110*************2X"),
        (FieldKind.ACCOUNT, "6222020200112233", "****2233"),
        (FieldKind.ADDRESS, "北京市朝阳区建国路88号院3号楼2单元", "北京市朝阳区****"),
        (FieldKind.AMOUNT, "USD 6,000.00", "****"),
        (FieldKind.CODE, "493817", "****"),
    ],
)
def test_each_kind_of_field_has_its_masked_form(kind: FieldKind, value: str, masked: str) -> None:
    template = compile_template(
        TemplateDraft(
            "masking_probe",
            Channel.PUSH,
            Category.SERVICE,
            bodies={"zh-CN": "{{ value }}", "en": "{{ value }}"},
            fields={"value": FieldSpec(value, kind)},
        )
    )
    assert template.render("en", {"value": value}).body == masked


def test_a_one_time_passcode_shows_only_when_declared_safe() -> None:
    otp = TemplateDraft(
        "otp_sms_v1",
        Channel.SMS,
        Category.TRANSACTIONAL,
        bodies={
            "zh-CN": "验证码{{ code|unmasked }}，5分钟内有效。",
            "en": "Code {{ code|unmasked }}",
        },
        fields={"code": FieldSpec("493817", FieldKind.CODE, safe=True)},
    )
    rendered = compile_template(otp).render("zh-CN", {"code": "120934"})
    # Transactional: no opt-out line.
    assert (rendered.body, rendered.opt_out_appended) == ("验证码120934，5分钟内有效。", False)


def test_unmasked_on_a_field_not_declared_safe_is_refused_with_its_line() -> None:
    body = "您好\n尾号{{ account|unmasked }}"
    found = refusal(bodies={"zh-CN": body, "en": "x {{ account }}"})
    assert found == {
        (
            "bodies.zh-CN",
            "line 2: |unmasked on 'account': only a field declared safe may be shown unmasked",
        )
    }


def test_an_undeclared_field_is_refused_with_its_line() -> None:
    found = refusal(bodies={"zh-CN": "您好", "en": "Hello\n\nyour balance is {{ balance }}"})
    assert found == {("bodies.en", "line 3: 'balance' is not a declared field")}


def test_a_syntax_error_is_refused_with_its_line() -> None:
    found = refusal(bodies={"zh-CN": "您好\n{% if %}", "en": "Hello {{ name }"})
    assert found == {
        ("bodies.zh-CN", "line 2: Expected an expression, got 'end of statement block'"),
        ("bodies.en", "line 1: unexpected '}'"),
    }


def test_a_template_failing_with_its_samples_is_refused_when_saved() -> None:
    found = refusal(bodies={"zh-CN": "您好\n{{ account + 1 }}", "en": "ok"})
    assert found == {
        (
            "bodies.zh-CN",
            "line 2: fails with the sample values: TypeError: unsupported operand type(s) "
            "for +: '_Value' and 'int'",
        )
    }


@pytest.mark.parametrize(
    "body",
    [
        "{{ account.__class__ }}",
        "{{ account._raw }}",
        "{{ account|attr('_raw') }}",
        "{{ account.__init__.__globals__ }}",
    ],
)
def test_the_sandbox_keeps_raw_values_and_python_out_of_reach(body: str) -> None:
    [(field, description)] = refusal(bodies={"zh-CN": body, "en": "ok"})
    assert field == "bodies.zh-CN"
    assert "SecurityError" in description


def test_globals_are_not_available() -> None:
    found = refusal(bodies={"zh-CN": "{{ range(10)|list }}{{ lipsum() }}", "en": "ok"})
    assert found == {
        ("bodies.zh-CN", "line 1: 'range' is not a declared field"),
        ("bodies.zh-CN", "line 1: 'lipsum' is not a declared field"),
    }


def test_every_shape_problem_is_named_at_once() -> None:
    found = refusal(
        template_id="bad id!",
        topic="",
        bodies={"zh-CN": " ", "fr": "Bonjour"},
        subjects={"zh-CN": "主题"},
        fields={"Name": FieldSpec(""), "unsubscribe_url": FieldSpec("x")},
    )
    assert {field for field, _ in found} == {
        "template_id",
        "topic",
        "fields.Name",
        "fields.Name.sample",
        "fields.unsubscribe_url",
        "bodies.fr",
        "bodies.zh-CN",
        "bodies.en",
        "subjects",
    }


def test_a_marketing_sms_gets_its_opt_out_in_its_language_once() -> None:
    template = compile_template(draft())
    assert template.render("en", VALUES).body.endswith(". Reply TD to unsubscribe")
    already = compile_template(
        draft(
            bodies={
                "zh-CN": "{{ product|unmasked }}上新，回复TD退订",
                "en": "New: {{ product|unmasked }}",
            }
        )
    )
    rendered = already.render("zh-CN", VALUES)
    assert (rendered.body, rendered.opt_out_appended) == ("USD wealth 6M上新，回复TD退订", False)


def test_a_service_sms_has_no_opt_out_line() -> None:
    service = compile_template(draft(category=Category.SERVICE, topic=""))
    assert "TD" not in service.render("zh-CN", VALUES).body


def email(**fields: Any) -> TemplateDraft:
    base: dict[str, Any] = {
        "template_id": "offer_usd_fx_wealth_email_v1",
        "channel": Channel.EMAIL,
        "subjects": {"zh-CN": "{{ product|unmasked }}", "en": "{{ product|unmasked }}"},
        "bodies": {
            "zh-CN": "尊敬的{{ name|unmasked }}：\n欢迎了解。",
            "en": "Dear {{ name|unmasked }},\nsee.",
        },
    }
    base.update(fields)
    return draft(**base)


def test_a_marketing_email_gets_an_unsubscribe_link_it_lacks() -> None:
    template = compile_template(email())
    rendered = template.render("en", VALUES, unsubscribe_url="https://bank.example/u/abc")
    assert rendered.subject == "USD wealth 6M"
    assert rendered.body == (
        "Dear 王芳,\nsee.\n\nTo stop receiving these e-mails, unsubscribe: https://bank.example/u/abc"
    )
    assert rendered.sms is None


def test_a_marketing_email_placing_its_own_link_gets_no_second_one() -> None:
    template = compile_template(
        email(bodies={"zh-CN": "退订：{{ unsubscribe_url }}\n您好", "en": "{{ unsubscribe_url }}"})
    )
    rendered = template.render("zh-CN", VALUES, unsubscribe_url="https://bank.example/u/abc")
    assert rendered.body == "退订：https://bank.example/u/abc\n您好"


def test_a_marketing_email_without_its_link_is_not_rendered() -> None:
    with pytest.raises(InvalidArgument) as raised:
        compile_template(email()).render("zh-CN", VALUES)
    assert [v.field for v in raised.value.violations] == ["unsubscribe_url"]


def test_an_email_needs_a_one_line_subject_in_each_language() -> None:
    found = refusal(
        channel=Channel.EMAIL, subjects={"zh-CN": "主题", "en": "A\n{{ product|unmasked }}"}
    )
    assert found == {("subjects.en", "must render to one non-empty line")}
    assert refusal(channel=Channel.EMAIL, subjects={"zh-CN": "主题"}) == {
        ("subjects.en", "is required")
    }


def test_rendering_needs_exactly_the_declared_fields() -> None:
    template = compile_template(draft())
    with pytest.raises(InvalidArgument) as raised:
        template.render("zh-CN", {"name": "王芳", "balance": "1"})
    assert {v.field for v in raised.value.violations} == {
        "values.balance",
        "values.account",
        "values.product",
        "values.phone",
    }


def test_a_declared_field_given_blank_is_required_as_a_missing_one() -> None:
    template = compile_template(draft())
    with pytest.raises(InvalidArgument) as raised:
        template.render("zh-CN", {**VALUES, "account": "", "product": "  "})
    assert [(v.field, v.description) for v in raised.value.violations] == [
        ("values.account", "is required"),
        ("values.product", "is required"),
    ]


def test_a_language_the_template_lacks_falls_back_to_chinese() -> None:
    assert compile_template(draft()).render("fr", VALUES).language == "zh-CN"


def test_a_render_failure_at_send_names_the_line_not_the_values() -> None:
    template = compile_template(
        draft(
            bodies={"zh-CN": "您好\n{{ 100 // (product|unmasked|int) }}", "en": "ok"},
            fields={**FIELDS, "product": FieldSpec("4", safe=True)},
        )
    )
    with pytest.raises(RenderFailed) as raised:
        template.render("zh-CN", {**VALUES, "product": "0.0"})
    assert (raised.value.part, raised.value.language, raised.value.line) == ("bodies", "zh-CN", 2)
    assert raised.value.reason == "ZeroDivisionError"
    assert "0.0" not in str(raised.value)


@pytest.mark.parametrize(
    ("text", "signature", "expected"),
    [
        ("", "", SmsLength(0, 0, 70)),
        ("好" * 70, "", SmsLength(70, 1, 70)),
        ("好" * 71, "", SmsLength(71, 2, 67)),
        ("a" * 134, "", SmsLength(134, 2, 67)),
        ("a" * 135, "", SmsLength(135, 3, 67)),
        ("😀" * 35, "", SmsLength(70, 1, 70)),  # outside the BMP: two UCS-2 units each
        ("好" * 64, "【知客银行】", SmsLength(70, 1, 70)),
    ],
)
def test_sms_length_is_counted_in_ucs2_units(
    text: str, signature: str, expected: SmsLength
) -> None:
    assert sms_length(text, signature) == expected


def test_saving_reports_the_sms_length_of_each_language() -> None:
    samples = compile_template(draft()).samples
    assert samples["zh-CN"].body == "尊敬的刘建军，您尾号****2233的账户可购买美元理财。回复TD退订"
    assert samples["zh-CN"].sms == SmsLength(35, 1, 70)
    assert samples["en"].sms is not None
    assert samples["en"].sms.characters == len(samples["en"].body)
