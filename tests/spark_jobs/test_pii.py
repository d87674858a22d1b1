"""The ``pii`` stage: which addresses are replaced and which are not (tricky cases decided one by one), every valid
generated address found in running text, and a real pipeline run whose cleaned text carries the placeholders."""

from __future__ import annotations

import ipaddress
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spark_jobs.config import PipelineConfig
from spark_jobs.pii import PLACEHOLDERS, Redactor, redact
from spark_jobs.pipeline import run
from tests.spark_jobs.generated_docs import en_sentence

KINDS = tuple(PLACEHOLDERS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Write to john.doe+news@mail.example.com.", "Write to <EMAIL>."),
        ("    # Maintainer: Bob <bob@corp.example.org>\n", "    # Maintainer: Bob <<EMAIL>>\n"),
        ("user at example dot com, user[at]example.com", "user at example dot com, user[at]example.com"),
        ("name@localhost and @handle and a@b", "name@localhost and @handle and a@b"),
        ("The server 192.168.1.20 answered; so did 8.8.8.8.", "The server <IPV4> answered; so did <IPV4>."),
        ('HOST = "203.0.113.7"  # test net', 'HOST = "<IPV4>"  # test net'),
        ("256.1.1.1 and 1.2.3.300 and 01.2.3.4", "256.1.1.1 and 1.2.3.300 and 01.2.3.4"),
        ("section 1.2.3.4.5 of the manual", "section 1.2.3.4.5 of the manual"),
        (
            "version 1.2.3.4, Version: 10.0.0.1, v. 2.3.4.5, v1.2.3.4",
            "version 1.2.3.4, Version: 10.0.0.1, v. 2.3.4.5, v1.2.3.4",
        ),
        (
            '__version__ = "2.6.3.1"  # see rfc7231#section-7.1.1.1',
            '__version__ = "2.6.3.1"  # see rfc7231#section-7.1.1.1',
        ),
        ("via 10.0.0.1, dev 10.0.0.2 (§ 4.2.1.1)", "via <IPV4>, dev <IPV4> (§ 4.2.1.1)"),
        ("bind 0.0.0.0 or 127.0.0.1, never 10.1.2.3", "bind 0.0.0.0 or 127.0.0.1, never <IPV4>"),
        ("addr 2001:db8:85a3::8a2e:370:7334 and dead:beef:cafe::1.", "addr <IPV6> and <IPV6>."),
        ("std::vector a::b 12:30:45 ::1 :: fe80::1", "std::vector a::b 12:30:45 ::1 :: fe80::1"),
        ("mapped ::ffff:192.0.2.128 here", "mapped ::ffff:<IPV4> here"),
        ("2001:db8:0:0:0:0:2:1 is fine", "<IPV6> is fine"),
    ],
)
def test_tricky_cases(text, expected):
    assert redact(text, KINDS)[0] == expected


def test_counts_and_kinds():
    text = "a@example.com b@example.com 10.0.0.2 2001:db8::7:1"
    assert redact(text, KINDS) == ("<EMAIL> <EMAIL> <IPV4> <IPV6>", {"email": 2, "ipv4": 1, "ipv6": 1})
    assert redact(text, ("ipv4",)) == ("a@example.com b@example.com <IPV4> 2001:db8::7:1", {"ipv4": 1})


def test_every_valid_generated_address_is_replaced_and_invalid_ones_are_not():
    rng = random.Random(5)
    for _ in range(300):
        v4 = ipaddress.IPv4Address(rng.getrandbits(32))
        v6 = ipaddress.IPv6Address(rng.getrandbits(128))
        bad = ".".join(str(rng.randrange(256, 1000) if i == rng.randrange(4) else rng.randrange(256)) for i in range(4))
        bad = bad if bad.count(".") == 3 and any(int(o) > 255 for o in bad.split(".")) else "300.1.1.1"
        parts = [en_sentence(rng), f"from {v4},", en_sentence(rng), f"via {v6.compressed}.", f"not {bad}."]
        text, counts = redact(" ".join(parts), KINDS)
        v4_expected = 0 if v4.is_loopback or v4.is_unspecified else 1
        assert (str(v4) in text) == (v4_expected == 0) and counts["ipv4"] == v4_expected
        assert v6.compressed not in text and counts["ipv6"] == 1
        assert bad in text


def test_the_batch_function_rewrites_text_and_code_and_counts():
    batch = pa.record_batch(
        [pa.array(["mail x@example.org", None, "# owner y@example.org\nx = 1\n", "nothing here"]),
         pa.array(["text", "text", "code", "text"])],
        names=["text", "kind"],
    )  # fmt: skip
    out = Redactor(KINDS)(batch)
    assert out["text"] == ["mail <EMAIL>", None, "# owner <EMAIL>\nx = 1\n", "nothing here"]
    assert out["_pii_email"].tolist() == [1, 0, 1, 0]


def test_a_pipeline_run_replaces_addresses_in_cleaned_and_counts_them(spark, tmp_path):
    rng = random.Random(9)
    docs = []
    for i in range(12):
        lines = [" ".join(en_sentence(rng) for _ in range(3)) for _ in range(4)]
        if i % 3 == 0:
            lines[1] += f" Contact user{i}@example.com or 198.51.100.{i}."
        docs.append({"id": i, "text": "\n".join(lines)})
    docs.append({"id": 50, "text": "short"})  # removed by filter: not rewritten, not counted
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps(d) + "\n" for d in docs))
    out = tmp_path / "out"
    cfg = PipelineConfig.from_args(["--input", str(source), "--output", str(out), "--stages", "filter,pii"])
    report = run(cfg, spark)

    cleaned = {r["doc_id"]: r["text"] for r in pq.read_table(out / "cleaned").to_pylist()}
    originals = {d["id"]: d["text"] for d in docs}
    assert set(cleaned) == set(range(12))
    for i, text in cleaned.items():
        assert text == redact(originals[i], KINDS)[0]
        assert ("<EMAIL>" in text and "<IPV4>" in text) == (i % 3 == 0)
    stage = report["stages"]["pii"]
    assert stage["replaced"] == {"email": 4, "ipv4": 4, "ipv6": 0} and stage["docs_changed"] == 4
    assert stage["docs_in"] == stage["docs_out"] == 12 and stage["removed_by_reason"] == {}
    accounting = report["accounting"]
    assert accounting["input"] == 13 == accounting["cleaned"] + accounting["removed"]
    assert pq.read_table(out / "removed").to_pylist()[0]["text"] == "short"
