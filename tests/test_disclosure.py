"""Case table for the pre-publication privacy review (broadcaster.privacy.detection).

Every missed or false finding reported against the review becomes a new row in CASES.
"""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.privacy.detection import CODES, Finding, mask, review

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def make_id(body: str) -> str:
    """Append the ISO 7064 MOD 11-2 check character to a 17-digit ID body."""
    total = sum(int(c) * w for c, w in zip(body, _ID_WEIGHTS, strict=True))
    return body + "10X98765432"[total % 11]


def make_id_ending_in_x(region_and_birth: str) -> str:
    """Return a valid ID for the 14-digit region+birth date whose check character is X."""
    ids = (make_id(f"{region_and_birth}{seq:03d}") for seq in range(1000))
    return next(i for i in ids if i.endswith("X"))


def luhn_sum(digits: str) -> int:
    """Return the Luhn sum of a digit string (valid when divisible by 10)."""
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total


def make_card(prefix: str) -> str:
    """Append the Luhn check digit to a card number prefix."""
    return next(prefix + d for d in "0123456789" if luhn_sum(prefix + d) % 10 == 0)


def break_check(number: str) -> str:
    """Change the last digit so a valid check digit becomes invalid."""
    return number[:-1] + str((int(number[-1]) + 1) % 10)


def full_width(text: str) -> str:
    """Convert ASCII letters and digits to their full-width forms."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)


def group4(digits: str, sep: str) -> str:
    """Write a digit string in groups of 4 joined by sep."""
    return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4))


ID = make_id("37020219900101123")
ID_X = make_id_ending_in_x("11010519850315")
CARD16 = make_card("622202001234567")
CARD19 = make_card("621700123456789012")
BAD_ID = break_check(ID)
BAD_CARD = break_check(CARD16)

CASES = [
    # mobile numbers
    ("13812345678", ["mobile"], "mobile-plain"),
    ("请联系13812345678张先生", ["mobile"], "mobile-chinese-around"),
    ("+8613812345678", ["mobile"], "mobile-plus86"),
    ("+86 138 1234 5678", ["mobile"], "mobile-plus86-spaced"),
    ("+86-138-1234-5678", ["mobile"], "mobile-plus86-dashed"),
    ("0086 13912345678", ["mobile"], "mobile-0086"),
    ("86-15012345678", ["mobile"], "mobile-86-dash"),
    ("电话：138-1234-5678。", ["mobile"], "mobile-dashed-chinese"),
    ("138 1234 5678", ["mobile"], "mobile-spaced"),
    ("电话１３８１２３４５６７８", ["mobile"], "mobile-full-width"),
    ("＋８６　１９９１２３４５６７８", ["mobile"], "mobile-full-width-plus86"),
    ("13812345678、13987654321", ["mobile", "mobile"], "mobile-two-listed"),
    ("13812345678 13987654321", ["mobile", "mobile"], "mobile-two-spaced"),
    # pasted from word processors / chat apps: invisible characters, no-break spaces, dashes
    ("电话138\u200b1234\u200b5678", ["mobile"], "mobile-zero-width-inside"),
    ("电话138\u00a01234\u00a05678", ["mobile"], "mobile-nbsp-grouped"),
    ("电话138\u20111234\u20115678", ["mobile"], "mobile-non-breaking-hyphen"),
    ("电话138\u20131234\u20135678", ["mobile"], "mobile-en-dash"),
    ("+86\u202f138\u202f1234\u202f5678", ["mobile"], "mobile-narrow-nbsp"),
    ("\ufeff1381234\u00ad5678", ["mobile"], "mobile-bom-and-soft-hyphen"),
    ("zhang\u200b@qq.com", ["email"], "email-zero-width"),
    # resident IDs
    (f"身份证号：{ID}。", ["resident_id"], "id-chinese-around"),
    (f"号码{ID_X}已登记", ["resident_id"], "id-check-x"),
    (f"{ID_X.lower()}", ["resident_id"], "id-check-lower-x"),
    (f"证件{full_width(ID_X.lower())}", ["resident_id"], "id-full-width-x"),
    (f"{ID[:6]} {ID[6:14]} {ID[14:]}", ["resident_id"], "id-grouped-6-8-4"),
    (f"{ID[:6]}\u00a0{ID[6:14]}\u00a0{ID[14:]}", ["resident_id"], "id-nbsp-grouped"),
    (f"{ID[:9]}\u200b{ID[9:]}", ["resident_id"], "id-zero-width-inside"),
    (f"卡号{group4(CARD16, chr(0x2011))}", ["bank_card"], "card-non-breaking-hyphens"),
    # bank cards
    (CARD16, ["bank_card"], "card-16"),
    (CARD19, ["bank_card"], "card-19"),
    (group4(CARD16, " "), ["bank_card"], "card-grouped-spaces"),
    (group4(CARD16, "-"), ["bank_card"], "card-grouped-dashes"),
    (group4(CARD19, " "), ["bank_card"], "card-19-grouped"),
    (f"卡号{CARD16}转账", ["bank_card"], "card-chinese-around"),
    (f"卡号{full_width(CARD16)}", ["bank_card"], "card-full-width"),
    # e-mail addresses
    ("zhang.san@example.com", ["email"], "email-plain"),
    ("a+b@qq.com", ["email"], "email-plus"),
    ("联系zhangsan@163.com获取", ["email"], "email-chinese-around"),
    ("邮箱：ｚｈａｎｇ＠ｑｑ．ｃｏｍ", ["email"], "email-full-width"),
    ("13812345678@qq.com", ["email"], "email-with-phone-local-part"),
    ("联系人.zhang_san@qq.com", ["email"], "email-after-dot"),
    # vehicle plates
    ("鲁B·12345", ["vehicle_plate"], "plate-dot"),
    ("车牌鲁B12345逃逸", ["vehicle_plate"], "plate-chinese-around"),
    ("粤BD12345", ["vehicle_plate"], "plate-new-energy"),
    ("京A 88888", ["vehicle_plate"], "plate-space"),
    # mixed
    (
        f"张三，身份证{ID}，电话13812345678，车辆鲁B12345，邮箱zs@qq.com",
        ["resident_id", "mobile", "vehicle_plate", "email"],
        "mixed-all",
    ),
    # not findings: service numbers, landlines, counts, dates
    ("报警请拨110，火警119，急救120，交通事故122", [], "service-emergency"),
    ("市民热线12345，卫生12320，消费者12315，价格12358", [], "service-hotlines"),
    ("森林火警95119，应急12350，12369，12379", [], "service-other"),
    ("值班电话0532-88888888", [], "landline-dash"),
    ("(0532) 8888 8888", [], "landline-parens"),
    ("010-12345678", [], "landline-beijing"),
    ("0532\u00a08888\u00a08888", [], "landline-nbsp"),
    ("010\u201112345678", [], "landline-non-breaking-hyphen"),
    ("110\u200b119\u200b120", [], "service-numbers-zero-width"),
    ("0532-12345", [], "landline-short"),
    ("2026年11月26日14时30分", [], "date-chinese"),
    ("2026-11-26 14:30", [], "date-iso"),
    ("转移群众3400人，房屋1,234间", [], "counts"),
    ("20261126143000", [], "timestamp-14-digits"),
    ("192.168.1.1 v1.2.3", [], "ip-and-version"),
    # not findings: near misses
    ("12812345678", [], "eleven-digits-12"),
    ("10012345678", [], "eleven-digits-10"),
    ("23812345678", [], "eleven-digits-2"),
    ("9913812345678", [], "mobile-inside-longer-run"),
    ("123456789012345", [], "fifteen-digits"),
    ("12345678901234567890123", [], "long-digit-run"),
    (f"{ID}12", [], "id-inside-longer-run"),
    (BAD_ID, [], "id-bad-check"),
    (make_id("37020219901301123"), [], "id-bad-month"),
    (make_id("37020219900230123"), [], "id-feb-30"),
    (make_id("37020220991231123"), [], "id-future"),
    (make_id("37020218991231123"), [], "id-before-1900"),
    (make_id("97020219900101123"), [], "id-bad-region"),
    (BAD_CARD, [], "card-bad-luhn"),
    (group4(BAD_CARD, " "), [], "card-grouped-bad-luhn"),
    ("鲁B1234", [], "plate-too-short"),
    ("鲁B1234567", [], "plate-too-long"),
    ("鲁BABCDE", [], "plate-no-digit"),
    ("user@localhost", [], "email-no-tld"),
    ("@qq.com", [], "email-no-local"),
]

POSITIVE = [(text, codes, case_id) for text, codes, case_id in CASES if codes]


@pytest.mark.parametrize(("text", "codes"), [c[:2] for c in CASES], ids=[c[2] for c in CASES])
def test_review_table(text: str, codes: list[str]) -> None:
    """Each row of the table yields exactly the expected codes, in order."""
    assert [f.code for f in review(text)] == codes


def test_test_helpers() -> None:
    """The hand-rolled check-digit helpers agree with published examples."""
    assert make_id("11010519491231002") == "11010519491231002X"
    assert make_card("453201511283036") == "4532015112830366"
    assert ID_X.endswith("X")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("请联系13812345678张先生", Finding("mobile", 3, 14, "138****5678")),
        ("+86 138 1234 5678。", Finding("mobile", 0, 17, "+86 138 **** 5678")),
        ("电话１３８１２３４５６７８", Finding("mobile", 2, 13, "１３８****５６７８")),
        (f"身份证号：{ID}。", Finding("resident_id", 5, 23, f"3702**********{ID[-4:]}")),
        (f"卡{group4(CARD16, ' ')}", Finding("bank_card", 1, 20, f"6222 **** **** {CARD16[-4:]}")),
        ("联系zhangsan@163.com获取", Finding("email", 2, 18, "z***@163.com")),
        ("车牌鲁B·12345", Finding("vehicle_plate", 2, 10, "鲁B·*****")),
        ("电话138\u200b1234\u200b5678。", Finding("mobile", 2, 15, "138****5678")),
        ("\u200b13812345678", Finding("mobile", 1, 12, "138****5678")),
    ],
    ids=[
        *("mobile", "mobile-plus86", "mobile-full-width", "id", "card", "email", "plate"),
        *("mobile-zero-width-inside", "mobile-after-zero-width"),
    ],
)
def test_exact_findings(text: str, expected: Finding) -> None:
    """Offsets index the original text and excerpts follow the documented masking rules."""
    assert review(text) == [expected]
    assert expected.to_dict() == {
        "code": expected.code,
        "start": expected.start,
        "end": expected.end,
        "excerpt": expected.excerpt,
    }


@pytest.mark.parametrize(("text", "codes"), [c[:2] for c in POSITIVE], ids=[c[2] for c in POSITIVE])
def test_mask_leaves_nothing(text: str, codes: list[str]) -> None:
    """Masking a positive case leaves no detectable finding."""
    assert review(mask(text)) == []


@pytest.mark.parametrize(("text", "codes"), [c[:2] for c in POSITIVE], ids=[c[2] for c in POSITIVE])
def test_excerpts_hide_data(text: str, codes: list[str]) -> None:
    """An excerpt is masked and never carries the full original digits or local part."""
    normalised = text.translate({cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)})
    for f in review(text):
        original = normalised[f.start : f.end]
        excerpt = f.excerpt.translate({cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)})
        assert "*" in f.excerpt
        assert original not in excerpt
        digits = re.sub(r"\D", "", original)
        if len(digits) >= 5:
            assert digits not in re.sub(r"\D", "", excerpt)


_ALPHABET = st.one_of(
    st.sampled_from(list("0123456789 -+·@.Xx鲁B京A联系１３８ｘ＠　")),
    st.characters(),
)


@given(st.text(alphabet=_ALPHABET, max_size=80))
def test_review_never_raises(text: str) -> None:
    """For arbitrary text, findings are in range, sorted, non-overlapping and masking is clean."""
    findings = review(text)
    end = 0
    for f in findings:
        assert f.code in CODES
        assert end <= f.start < f.end <= len(text)
        end = f.end
    assert review(mask(text)) == []
