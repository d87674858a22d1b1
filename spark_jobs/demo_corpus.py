"""The default corpus, built at run time from what every Python installation carries, plus our own fixture.

Nothing is downloaded: code documents are the standard library's own ``.py`` files, English prose comes from
``pydoc_data.topics`` and the standard library's module docstrings, and a fixture written for this project adds
what a real crawl has and every filter should catch: paragraphs in other languages, short fragments, boilerplate
repeated many times, exact copies and near copies. ``scale`` > 1 appends mirrors of the whole corpus (exact copies,
lightly edited copies and reshuffled new documents) for benchmarks of 100 MB and more.

``python -m spark_jobs.demo_corpus OUT_DIR [--scale N] [--force]`` writes it and prints the input paths. OUT_DIR is
deleted first, so it must be missing, empty or an earlier demo corpus (recognised by the ``MARKER`` file written
into it); any other directory is refused unless ``--force`` is given, since it may hold the user's own files.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import shutil
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

# Written for this project (not copied from anywhere): ordinary prose in languages other than English.
OTHER_LANGUAGES = {
    "fr": (
        "Le petit marché du village ouvre chaque samedi matin sur la place de l'église. Les producteurs de la "
        "région y vendent des légumes, du fromage et du pain encore chaud. Les enfants courent entre les étals "
        "pendant que leurs parents discutent du temps qu'il fera la semaine prochaine."
    ),
    "de": (
        "Am Rand der Stadt liegt ein kleiner See, an dem im Sommer viele Familien ihre Nachmittage verbringen. "
        "Die Kinder bauen Burgen aus Sand, und die Eltern lesen im Schatten der alten Bäume. Wenn es dunkel wird, "
        "fahren alle mit dem Fahrrad zurück nach Hause."
    ),
    "es": (
        "Mi abuela cocinaba una sopa de lentejas todos los domingos, y la casa entera olía a comino y a laurel. "
        "Nos sentábamos alrededor de la mesa grande de la cocina y hablábamos durante horas. Todavía guardo su "
        "cuaderno de recetas, escrito a mano con una letra muy pequeña."
    ),
    "it": (
        "La biblioteca comunale è stata rinnovata durante l'inverno e ora ha una sala luminosa per lo studio. "
        "Gli studenti arrivano presto la mattina e restano fino alla chiusura. Il bibliotecario conosce tutti "
        "per nome e consiglia sempre un libro nuovo da leggere."
    ),
    "pt": (
        "O barco de pesca saiu do porto antes do nascer do sol, com três homens e muitas redes. O mar estava "
        "calmo e o céu completamente limpo. Voltaram ao fim da tarde com o barco cheio de sardinhas e uma "
        "história nova para contar no café."
    ),
    "nl": (
        "Elke ochtend fietst mijn buurman langs de rivier naar zijn werk in de stad. Hij zegt dat hij op die "
        "manier wakker wordt en de dag rustig kan beginnen. Als het regent neemt hij de trein, maar dat vindt "
        "hij veel minder leuk."
    ),
    "ru": (
        "Зимой в нашем городе выпадает очень много снега, и дети каждый день катаются на санках с горки. "
        "Взрослые расчищают дорожки и пьют горячий чай на кухне. Весной снег тает, и по улицам бегут "
        "весёлые ручьи."
    ),
    "zh": (
        "我们学校后面有一个小公园，春天的时候开满了花。每天下午放学以后，很多学生都会去那里散步或者看书。"
        "公园里还有一个小湖，湖里有很多鱼，孩子们常常在湖边喂它们。"
    ),
    "ja": (
        "駅の近くに新しいパン屋さんができました。毎朝早くから焼きたてのパンのいい匂いがして、学校へ行く前に"
        "寄る人がたくさんいます。私はクリームパンが一番好きで、週末には家族の分も買って帰ります。"
    ),
}

BOILERPLATE = (
    "Subscribe to our newsletter for the latest offers!\n"
    "Click here to accept cookies and continue browsing.\n"
    "All rights reserved. Terms of use apply.\n"
)

SHORT_FRAGMENTS = ["ok", "Read more", "Home | About | Contact", "404 not found\n", "\n\n\n", "lorem"]

MARKER = ".demo_corpus"  # written first into OUT_DIR: what is there may be deleted by the next run

DEMO_CODE_PACKAGES = ("json", "email", "http", "urllib", "logging", "importlib", "concurrent", "wsgiref")


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_py_files(packages: tuple[str, ...] | None = None) -> list[Path]:
    """The standard library's own sources (tests and site-packages excluded), sorted for determinism."""
    root = stdlib_dir()
    skip = {"site-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__"}
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if skip & set(rel.parts):
            continue
        if packages is None or rel.parts[0] in packages:
            files.append(path)
    return files


def docstring_documents(files: list[Path]) -> Iterator[str]:
    """English prose: each module's docstrings (module, classes, functions) joined as one document."""
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef | ast.FunctionDef)]
        parts = [d.strip() for d in (ast.get_docstring(n) for n in nodes) if d]
        if parts:
            yield "\n\n".join(parts)


def pydoc_topics() -> list[str]:
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


def near_copy(text: str, rng: random.Random, rate: float) -> str:
    """Replace a share ``rate`` of the words with others from the same text (line structure kept)."""
    lines = text.split("\n")
    vocab = text.split() or ["x"]
    out = []
    for line in lines:
        words = line.split(" ")
        out.append(" ".join(rng.choice(vocab) if w and rng.random() < rate else w for w in words))
    return "\n".join(out)


def fixture_documents(prose: list[str], rng: random.Random) -> Iterator[dict]:
    """Documents that give every filter work to do, each tagged with what it is (``origin``)."""
    for lang, para in OTHER_LANGUAGES.items():
        lines = para.replace(". ", ".\n").replace("。", "。\n").strip()  # one sentence a line: passes length rules
        yield {"text": lines, "origin": f"other_language:{lang}"}
    for frag in SHORT_FRAGMENTS:
        yield {"text": frag, "origin": "short_fragment"}
    for i in range(30):
        yield {"text": BOILERPLATE * (3 + i % 5), "origin": "boilerplate"}
    for text in prose[:20]:
        yield {"text": text, "origin": "exact_copy"}
        yield {"text": "  " + text.replace("\n", "\n ") + "\n", "origin": "whitespace_copy"}
        yield {"text": near_copy(text, rng, 0.02), "origin": "near_copy"}
    yield {"text": None, "origin": "null_text"}
    yield {"text": "", "origin": "empty_text"}


def write_jsonl(path: Path, records: Iterator[dict]) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


class NotADemoCorpus(Exception):
    """The output directory holds something else; the message is the one line the user sees."""


def check_out_dir(out: Path) -> None:
    """Refuse to delete ``out`` unless it is missing, an empty directory or a corpus this module wrote."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise NotADemoCorpus(f"{out} exists and is not a directory (or is a link to one): choose another OUT_DIR")
    if any(out.iterdir()) and not (out / MARKER).is_file():
        raise NotADemoCorpus(
            f"{out} is not empty and was not written by demo_corpus (no {MARKER} file): it would be deleted; "
            "choose another OUT_DIR or pass --force"
        )


def write_demo_corpus(
    out_dir: str, scale: int = 1, seed: int = 0, full_stdlib: bool | None = None, force: bool = False
) -> list[str]:
    """Write the corpus under ``out_dir`` and return the input paths for ``--input``.

    ``scale=1`` is the demo's small corpus (a few packages of the standard library); ``scale>1`` uses the whole
    standard library and adds ``scale - 1`` mirrors of the prose, fixture and code. ``out_dir`` is replaced; unless
    ``force``, it must pass :func:`check_out_dir` (raises :class:`NotADemoCorpus`).
    """
    rng = random.Random(seed)
    out = Path(out_dir)
    if not force:
        check_out_dir(out)
    if out.is_dir() and not out.is_symlink():
        shutil.rmtree(out)
    else:
        out.unlink(missing_ok=True)
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by python -m spark_jobs.demo_corpus; the next run deletes this directory\n")
    code_dir = out / "code" / "cpython-lib"
    code_dir.mkdir(parents=True)
    full = scale > 1 if full_stdlib is None else full_stdlib
    files = stdlib_py_files(None if full else DEMO_CODE_PACKAGES)
    root = stdlib_dir()
    for path in files:
        dest = code_dir / path.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    (code_dir / "blob.py").write_bytes(b"\x00\x01binary\x00" * 10)  # a binary file with a code extension
    (code_dir / "latin1.py").write_bytes("# caf\xe9\nx = 1\ny = 2\nz = 3\n".encode("latin-1"))

    prose = pydoc_topics() + list(docstring_documents(files))
    base = [{"text": t, "origin": "pydoc_topic" if i < len(pydoc_topics()) else "docstrings"}
            for i, t in enumerate(prose)]
    write_jsonl(out / "prose.jsonl", iter(base))
    fixture = list(fixture_documents(prose, rng))
    write_jsonl(out / "fixture.jsonl", iter(fixture))
    with (out / "fixture.jsonl").open("ab") as fh:  # malformed lines a real dump has
        fh.write(b'{"text": "truncated line\n')
        fh.write(b'{"text": "bad bytes \xff\xfe here"}\n')
    paths = [str(out / "prose.jsonl"), str(out / "fixture.jsonl"), str(out / "code")]
    for m in range(1, scale):
        mirror = out / f"mirror-{m:03d}"
        mirror.mkdir()
        write_jsonl(mirror / "prose.jsonl", (_mirrored(r, rng, m) for r in base + fixture if r["text"]))
        code_records = ({"text": p.read_text(encoding="utf-8", errors="replace"), "kind": "code",
                         "path": str(p.relative_to(root))} for p in files)
        write_jsonl(mirror / "code.jsonl", (_mirrored(r, rng, m) for r in code_records))
        paths.append(str(mirror))
    return paths


def _mirrored(record: dict, rng: random.Random, mirror: int) -> dict:
    """A copy of a record as a mirror site would have it: exact (30%), lightly edited (30%) or rewritten (40%)."""
    roll = rng.random()
    text = record["text"]
    if roll < 0.3:
        origin = "mirror_exact"
    elif roll < 0.6:
        text, origin = near_copy(text, rng, 0.01), "mirror_near"
    else:
        text, origin = near_copy(text, rng, 0.5), "mirror_rewritten"
    return {**record, "text": text, "origin": origin, "mirror": mirror}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", help=f"replaced: must be missing, empty or an earlier demo corpus (with {MARKER})")
    p.add_argument("--scale", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace OUT_DIR whatever it holds")
    args = p.parse_args(argv)
    try:
        paths = write_demo_corpus(args.out_dir, args.scale, args.seed, force=args.force)
    except NotADemoCorpus as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in Path(args.out_dir).rglob("*") if f.is_file())
    print(f"corpus: {size / 1e6:.1f} MB in {args.out_dir}")
    print(" ".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
