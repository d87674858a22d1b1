"""Documents generated at test time from small word lists: English, German- and French-looking prose, edits.

Nothing here is copied text: every sentence is drawn from the lists below with a seeded ``random.Random``, so the
corpora are the same on every run and any size a test needs.
"""

from __future__ import annotations

import random

EN_NOUNS = (
    "river stone market winter garden letter window morning station harbour village engine pencil orchard bridge "
    "lantern meadow kettle ladder compass thunder blanket canvas copper island mirror teacher farmer doctor "
    "student kitchen library mountain forest valley country people family mother father friend school office "
    "company government system question problem answer history science money water story"
).split()
EN_VERBS = (
    "finds carries builds paints follows watches repairs opens closes remembers describes explains visits "
    "changes needs wants keeps brings leaves shows helps reads writes hears sees"
).split()
EN_ADJS = (
    "small old new bright quiet heavy narrow green early late warm cold simple careful strange common important "
    "young long short different large local public"
).split()
EN_PREPS = "near under behind across beside through after before without with into from".split()
EN_ADVS = "slowly quickly often never always again today together carefully quietly".split()

DE_NOUNS = (
    "Haus Stadt Wasser Brücke Garten Fenster Schule Arbeit Zeitung Straße Kirche Bahnhof Wald Berg Dorf Tisch "
    "Mutter Vater Freund Lehrer Bauer Kinder Geschichte Regierung Wirtschaft Frage Antwort Zeit Welt Leben"
).split()
DE_VERBS = (
    "findet trägt baut malt folgt beobachtet repariert öffnet schließt erinnert beschreibt erklärt besucht "
    "verändert braucht möchte behält bringt verlässt zeigt hilft liest schreibt hört sieht"
).split()
DE_ADJS = "kleine alte neue helle ruhige schwere schmale grüne frühe späte warme kalte einfache seltsame".split()
DE_WORDS = "der die das und nicht mit auf für von ist sich auch noch nach wird bei aber über schon heute".split()

FR_NOUNS = (
    "maison ville eau pont jardin fenêtre école travail journal rue église gare forêt montagne village table "
    "mère père ami professeur paysan enfants histoire gouvernement économie question réponse temps monde vie"
).split()
FR_VERBS = (
    "trouve porte construit peint suit regarde répare ouvre ferme rappelle décrit explique visite change "
    "cherche garde apporte quitte montre aide lit écrit entend voit"
).split()
FR_ADJS = "petite vieille nouvelle claire calme lourde étroite verte froide simple étrange belle grande".split()
FR_WORDS = "le la les et ne pas avec sur pour de est se aussi encore après dans mais très déjà aujourd'hui".split()


def en_sentence(rng: random.Random) -> str:
    """An English sentence from one of a few shapes."""
    c = rng.choice
    shapes = (
        f"The {c(EN_ADJS)} {c(EN_NOUNS)} {c(EN_VERBS)} the {c(EN_NOUNS)} {c(EN_PREPS)} the {c(EN_NOUNS)}.",
        f"Every {c(EN_NOUNS)} in the {c(EN_NOUNS)} {c(EN_VERBS)} a {c(EN_ADJS)} {c(EN_NOUNS)} {c(EN_ADVS)}.",
        f"A {c(EN_NOUNS)} {c(EN_VERBS)} what the {c(EN_ADJS)} {c(EN_NOUNS)} {c(EN_VERBS)}.",
        f"{c(EN_ADVS).capitalize()} the {c(EN_NOUNS)} and the {c(EN_NOUNS)} {c(EN_VERBS)} {c(EN_PREPS)} the "
        f"{c(EN_ADJS)} {c(EN_NOUNS)}.",
    )
    return c(shapes)


def de_sentence(rng: random.Random) -> str:
    c = rng.choice
    shapes = (
        f"Die {c(DE_ADJS)} {c(DE_NOUNS)} {c(DE_VERBS)} {c(DE_WORDS)} {c(DE_NOUNS)} {c(DE_WORDS)} der {c(DE_NOUNS)}.",
        f"Heute {c(DE_VERBS)} der {c(DE_NOUNS)} {c(DE_WORDS)} die {c(DE_ADJS)} {c(DE_NOUNS)} {c(DE_WORDS)}.",
        f"Das {c(DE_NOUNS)} ist {c(DE_WORDS)} {c(DE_ADJS)}, aber die {c(DE_NOUNS)} {c(DE_VERBS)} sich nicht.",
    )
    return c(shapes)


def fr_sentence(rng: random.Random) -> str:
    c = rng.choice
    shapes = (
        f"La {c(FR_ADJS)} {c(FR_NOUNS)} {c(FR_VERBS)} {c(FR_WORDS)} {c(FR_NOUNS)} {c(FR_WORDS)} la {c(FR_NOUNS)}.",
        f"Aujourd'hui le {c(FR_NOUNS)} {c(FR_VERBS)} la {c(FR_ADJS)} {c(FR_NOUNS)} {c(FR_WORDS)} le {c(FR_NOUNS)}.",
        f"Le {c(FR_NOUNS)} est très {c(FR_ADJS)}, mais la {c(FR_NOUNS)} ne {c(FR_VERBS)} pas le {c(FR_NOUNS)}.",
    )
    return c(shapes)


def prose(rng: random.Random, sentence=en_sentence, lines: int = 6, per_line: int = 3) -> str:
    """``lines`` lines of ``per_line`` sentences each."""
    return "\n".join(" ".join(sentence(rng) for _ in range(per_line)) for _ in range(lines))


def mutate(text: str, rate: float, rng: random.Random) -> str:
    """``text`` with each word, independently with probability ``rate``, substituted, deleted or followed by an
    inserted word (one of the three at random); line structure is kept."""
    out_lines = []
    for line in text.split("\n"):
        words = []
        for word in line.split(" "):
            if rng.random() >= rate:
                words.append(word)
                continue
            edit = rng.randrange(3)
            if edit == 0:
                words.append(rng.choice(EN_NOUNS))
            elif edit == 1:
                words.append(word)
                words.append(rng.choice(EN_ADJS))
            # edit == 2: the word is deleted
        out_lines.append(" ".join(words))
    return "\n".join(out_lines)


def python_module(rng: random.Random, functions: int = 4) -> str:
    """A small, ordinary Python module (passes the code filters)."""
    parts = [f'"""Helpers for the {rng.choice(EN_ADJS)} {rng.choice(EN_NOUNS)}."""\n']
    for i in range(functions):
        name, arg = rng.choice(EN_VERBS).rstrip("s"), rng.choice(EN_NOUNS)
        parts.append(
            f"\ndef {name}_{i}({arg}, count=3):\n"
            f"    total = 0\n"
            f"    for index in range(count):\n"
            f"        total += len(str({arg})) * index\n"
            f"    return total\n"
        )
    return "".join(parts)
