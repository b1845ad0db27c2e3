"""Routing a staff request to the department whose pilots should handle it.

Staff describe their need in one sentence; coordinators describe each department
with a name, one or two sentences and up to ten keywords.  That is very little
text, so the router adds three things to plain word overlap:

* **Topics.** A small built-in thesaurus groups the everyday words of municipal
  IT, security, data protection, organisation, HR and digitalisation work
  ("Tastatur", "Bildschirm", "Dockingstation" → *hardware*).  A department owns a
  topic when its own name, description or keywords use words of the topic, so
  the thesaurus never names a department and works for any coordinator's wording.
* **German word forms.** The shared analyser (:mod:`lotsenbot.nlp`) stems,
  splits compounds into parts the department texts use ("Dienstlaptop" →
  "laptop"), repairs typos towards known words and applies synonym groups.
  Compounds it leaves whole still match department terms they start or end with.
* **Hints.** Departments of the closest FAQ entries add evidence (see
  :func:`lotsenbot.tickets.hints.department_hints`): the knowledge base holds
  many more of the words staff really use than two sentences per department.
  Only a clearly related entry counts, and a hint supports text evidence but
  never routes on its own. The requester's own department catches everything
  that is no specialist topic.

Not all evidence weighs the same. A configured keyword or the department name,
as written (inflected), is the coordinator's own word and counts more than a
built-in topic word, which only supports it. A how-to question from a known
department ("Wie drucke ich ...?") stays with its own pilots unless it names
specialist work specifically, and the requester's own department's words count
less in the competition, because they mostly describe the context of the request.

Uncertainty is a first-class outcome: with weak evidence or a close runner-up
the decision is ``triage`` and coordinators decide, because a wrong department
costs a colleague more time than a short wait for a human choice. With a single
department that is no specialist one (a small Gemeinde's whole network) there is no
choice to make: every request goes there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from lotsenbot.nlp import CONCEPT_PREFIX, Analyzer, SynonymSet, Vocabulary, normalize, tokenize

__all__ = [
    "DepartmentLike",
    "RoutingDecision",
    "RoutingSettings",
    "TopicRouter",
    "route",
]


class DepartmentLike(Protocol):
    """The part of ``[[departments]]`` the router reads (``DepartmentConfig`` fits)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def keywords(self) -> Sequence[str]: ...
    @property
    def specialist(self) -> bool: ...


Decision = Literal["route", "triage"]
Reason = Literal[
    "topic", "own_department", "only_department", "uncertain", "no_match", "no_departments"
]


@dataclass(frozen=True)
class RoutingDecision:
    """Where a request goes, and the evidence for it.

    ``scores`` holds every department's score (text evidence plus FAQ hints) so
    that a triage message can show coordinators the candidates; ``reason`` says
    which rule decided, for the ticket history and for tuning:

    * ``topic``: the text (and hints) clearly point to ``department``;
    * ``own_department``: no clear specialist topic, so the requester's own pilots;
    * ``only_department``: the one department configured, not a specialist one, gets all;
    * ``uncertain``: two departments are close, coordinators decide;
    * ``no_match``: too little evidence and no known requester department.
    """

    decision: Decision
    department: str | None
    scores: dict[str, float]
    reason: Reason


@dataclass(frozen=True)
class RoutingSettings:
    """Weights and thresholds; the defaults were tuned on the dev half of the
    evaluation set in ``tests/data/routing_eval`` (see ``bench/routing_eval.py``).
    """

    name_weight: float = 3.0
    keyword_weight: float = 3.0
    description_weight: float = 1.5
    # A topic shared by query and department is weaker evidence than a shared word;
    # a department using several words of a topic owns it more, up to the cap (a topic
    # its texts name four or more times then counts a little more than one keyword).
    topic_weight: float = 1.0
    topic_cap: float = 4.0
    # A compound left whole by the analyser, matched by its head (last part), by
    # its modifier, or as part of a longer department compound.
    head_factor: float = 0.7
    modifier_factor: float = 0.5
    part_of_factor: float = 0.5
    min_part_length: int = 5
    # Analyser alternatives below this weight are ignored on the request side.
    min_alternative_weight: float = 0.8
    # A configured keyword or the name, as written, counts this many times (see
    # ``text_evidence``); surfaces shorter than this ("IT") are too ambiguous for it.
    keyword_boost: float = 1.5
    min_strong_length: int = 3
    # Several words of the request on one topic count up to this many times.
    topic_hits_cap: float = 2.0
    # FAQ hints (calibrated 0..1 scores of the closest FAQ entries). Below ``hint_floor``
    # the closest entry is barely related to the request (on the dev set such hints name
    # the right department about one time in four), so they add nothing; from there the
    # added score rises linearly to ``hint_weight`` at ``hint_full``. A department's best
    # hint counts, not the sum: the IT service owns most FAQ entries and would otherwise
    # collect a large hint from several mediocre matches.
    # At full strength a hint is worth about one keyword only this department uses.
    hint_weight: float = 7.0
    hint_floor: float = 0.2
    hint_full: float = 0.6
    # A department is chosen only with at least this score ...
    min_score: float = 4.0
    # ... supported by this much evidence (2 per configured keyword or name as written,
    # per multi-word keyword phrase and per fault report such as "druckt nicht mehr";
    # 1 per other matching word of the request, topic or FAQ hint) ...
    min_evidence: int = 2
    # ... unless the text alone (without hints) scores ``strong_score``: one word of a
    # topic a department clearly owns ("Resturlaub", "WeTransfer") is enough, except in
    # a how-to question from a known department ("Wie drucke ich ...?", "Wie füge ich
    # Adressen ein?"): that is about using a tool, so the own pilots take it unless the
    # request names specialist work specifically (``min_evidence``) ...
    strong_score: float = 6.0
    # ... and this lead over the runner-up (the requester's own department's score
    # counting ``own_department_factor`` times), absolute and relative to the winner.
    own_department_factor: float = 0.5
    min_margin: float = 1.0
    min_relative_margin: float = 0.15


_TOPIC_PREFIX = CONCEPT_PREFIX + "thema_"

# Topic thesaurus: words as people write them, analysed like everything else so
# inflected forms meet. Deliberately about *kinds of things*, not departments.
_TOPICS: Mapping[str, str] = {
    "stoerung": (
        "Störung gestört kaputt defekt Fehler Fehlermeldung Fehlercode Absturz abgestürzt "
        "stürzt hängt ausgefallen Ausfall Reparatur reparieren Ersatz klemmt eingefroren"
    ),
    "hardware": (
        "Rechner Computer PC Laptop Notebook Bildschirm Monitor Drucker Scanner Tastatur Maus "
        "Kamera Webcam Headset Dockingstation Telefon Diensthandy Smartphone Tablet Gerät "
        "Hardware Kopierer Beamer Lautsprecher Mikrofon Akku"
    ),
    "netzwerk": (
        "Netzwerk Netz WLAN VPN Internet Netzlaufwerk Laufwerk Server Verbindung LAN Kabel "
        "Fernzugriff Citrix"
    ),
    "zugang": (
        "Passwort Kennwort Benutzerkonto Konto Zugang Zugangsdaten Login einloggen gesperrt "
        "Berechtigung Zugriff Zugriffsrechte Rechte Postfach Gruppenpostfach Benutzername"
    ),
    "software": (
        "Software Installation installieren Update Lizenz Programm Anwendung Treiber Adobe Browser"
    ),
    "bedrohung": (
        "Phishing Spam Virus Viren Trojaner Schadsoftware Malware Ransomware verdächtig "
        "gehackt Angriff Hacker Betrug Betrüger Erpressung Sicherheitsvorfall Sicherheitslücke "
        "Anhang Absender Link Virenscanner Bitcoin angeblich gefälscht Fälschung seltsam "
        "merkwürdig dubios komisch"
    ),
    "datentraeger": (
        "USB Stick USB-Stick Festplatte Datenträger Cloud Dropbox WeTransfer Speicherkarte "
        "privat Privatgerät gestohlen verloren Diebstahl verschlüsseln Verschlüsselung"
    ),
    "personenbezug": (
        "personenbezogen DSGVO Datenschutz Bürgerdaten Kundendaten Sozialdaten Gesundheitsdaten "
        "Telefonnummer Adresse Foto Fotos aufzeichnen Aufzeichnung veröffentlichen weitergeben "
        "Weitergabe löschen Löschung Löschfrist aufbewahren Aufbewahrung Einwilligung Auskunft "
        "Auskunftsersuchen Betroffene schwärzen Datenpanne Empfänger"
    ),
    "organisation": (
        "zuständig Zuständigkeit Ablauf Abläufe Prozess Geschäftsprozess Dienstanweisung "
        "Regelung Organigramm Aktenplan Ablage Formular Vorlage Vordruck Umstrukturierung "
        "Zeichnungsbefugnis Unterschriftenregelung Geschäftsverteilungsplan Posteingang "
        "Postlauf Organisationsuntersuchung Stellenbemessung Personalbemessung Amtsleitung "
        "Dienstsiegel"
    ),
    "fortbildung": (
        "Fortbildung Schulung Seminar Kurs Kurse E-Learning Weiterbildung Workshop Training "
        "Lehrgang Qualifizierung Fortbildungsprogramm Webinar"
    ),
    "dienstrecht": (
        "Arbeitszeit Urlaub Resturlaub Teilzeit Homeoffice Telearbeit Zeiterfassung Gleitzeit "
        "Überstunden Stunden Einarbeitung Auszubildende Bewerbung Bewerber Dienstreise "
        "Krankmeldung Elternzeit"
    ),
    "digitalisierung": (
        "online digital digitalisieren Digitalisierung OZG Onlinedienst Online-Dienst "
        "Bürgerportal Servicekonto BundID E-Akte papierlos Papier Medienbruch Chatbot KI "
        "ChatGPT Pilotprojekt Idee Strategie automatisieren Automatisierung Onlinezugang "
        "Digitallotse Lotse"
    ),
}

# "geht nicht", "druckt nicht mehr", "kein Freizeichen": a fault report, whereas
# "Wie funktioniert …?" is a how-to question for the pilots of one's own department.
_FAULT_VERBS = frozenset(
    normalize(verb)
    for verb in (
        "geht", "gehen", "funktioniert", "funktionieren", "startet", "starten", "druckt",
        "drucken", "lädt", "laden", "öffnet", "öffnen", "reagiert", "läuft", "laufen",
        "verbindet", "komme", "kommt", "klappt",
    )
)  # fmt: skip
# Endings German inflection appends to a noun as written (umlauts are normalised away).
_INFLECTIONS = frozenset({"", "e", "s", "es", "n", "en", "er", "ern", "ns", "nen"})
_NEGATIONS = frozenset({"nicht", "kein", "keine", "keinen", "keiner", "nichts"})
_FAULT = _TOPIC_PREFIX + "stoerung"


def _reports_fault(text: str) -> bool:
    tokens = tokenize(text)
    if not any(token in _NEGATIONS for token in tokens):
        return False
    return "mehr" in tokens or any(token in _FAULT_VERBS for token in tokens)


# "Wie erstelle ich ...?", "Wie kann man ...?", "Wo finde ich ...?": someone wants to
# know how to do something themselves. "Wie lange dürfen wir ...?" asks for a rule.
_HOW_TO_WORDS = frozenset({"wie", "wo"})
_HOW_TO_SUBJECTS = frozenset({"ich", "man", "wir"})


def _asks_how_to(text: str) -> bool:
    tokens = tokenize(text)
    return any(
        token in _HOW_TO_WORDS and tokens[position + 2] in _HOW_TO_SUBJECTS
        for position, token in enumerate(tokens[:-2])
    )


def topic_synonyms() -> SynonymSet:
    """The routing topics as synonym groups, so the analyser emits them as concepts."""
    return SynonymSet([(_TOPIC_PREFIX + name, words.split()) for name, words in _TOPICS.items()])


# One query signal: index term -> (factor, whether it is the word's own stem).
_Reach = dict[str, tuple[float, bool]]


@dataclass(frozen=True)
class _Signal:
    """One word of the request (or a multi-word pattern) and what it reaches."""

    surface: str
    reach: _Reach
    # A pattern of several words ("druckt nicht mehr") is specific evidence by itself.
    specific: bool = False


@dataclass
class _DepartmentIndex:
    id: str
    specialist: bool
    weights: dict[str, float] = field(default_factory=dict)
    phrases: list[tuple[frozenset[str], float]] = field(default_factory=list)
    # Stem -> surfaces of the name and the one-word keywords, as the coordinator wrote them.
    strong: dict[str, set[str]] = field(default_factory=dict)

    def add(self, term: str, weight: float) -> None:
        if weight > self.weights.get(term, 0.0):
            self.weights[term] = weight


class TopicRouter:
    """Routes requests among a fixed set of departments.

    Built once per configuration (the department texts are analysed up front);
    :meth:`route` is then cheap and pure. ``synonyms`` are extra synonym groups
    (e.g. the FAQ's curated list), merged with the routing topics.
    """

    def __init__(
        self,
        departments: Iterable[DepartmentLike],
        *,
        synonyms: SynonymSet | None = None,
        settings: RoutingSettings | None = None,
    ) -> None:
        self.settings = settings or RoutingSettings()
        departments = list(departments)
        groups = topic_synonyms()
        if synonyms is not None:
            groups = groups.merged(synonyms)
        vocabulary = Vocabulary()
        vocabulary.add_lexicon(groups.words())
        self._analyzer = Analyzer(synonyms=groups, vocabulary=vocabulary)
        for department in departments:
            for text in (department.name, department.description, *department.keywords):
                vocabulary.add(self._analyzer.content_tokens(text))

        self._departments: list[_DepartmentIndex] = []
        seen: set[str] = set()
        for department in departments:
            if department.id in seen:
                raise ValueError(f"department id {department.id!r} given twice")
            seen.add(department.id)
            self._departments.append(self._index(department))
        self._any_specialist = any(d.specialist for d in self._departments)
        df: dict[str, int] = {}
        for index in self._departments:
            for term in index.weights:
                df[term] = df.get(term, 0) + 1
        count = max(len(self._departments), 1)
        self._idf = {term: math.log(1.0 + count / n) for term, n in df.items()}
        self._long_terms = [
            term
            for term in df
            if len(term) >= self.settings.min_part_length and not term.startswith(CONCEPT_PREFIX)
        ]

    @property
    def department_ids(self) -> list[str]:
        return [d.id for d in self._departments]

    def _index(self, department: DepartmentLike) -> _DepartmentIndex:
        s = self.settings
        index = _DepartmentIndex(department.id, bool(getattr(department, "specialist", False)))
        fields: list[tuple[str, float]] = [
            (department.name, s.name_weight),
            (department.description, s.description_weight),
        ]
        for keyword in department.keywords:
            primaries = frozenset(unit.primary for unit in self._analyzer.units(keyword))
            if len(primaries) > 1:
                # "mobiles Arbeiten": the phrase is strong evidence, "arbeit" alone is not.
                index.phrases.append((primaries, s.keyword_weight))
                fields.append((keyword, s.description_weight))
            else:
                fields.append((keyword, s.keyword_weight))
                self._add_strong(index, keyword)
        self._add_strong(index, department.name)
        topic_mass: dict[str, float] = {}
        for text, weight in fields:
            for unit in self._analyzer.units(text):
                for term, factor in unit.alternatives.items():
                    if term.startswith(_TOPIC_PREFIX):
                        share = factor * weight / s.description_weight
                        topic_mass[term] = topic_mass.get(term, 0.0) + share
                    else:
                        index.add(term, weight * factor)
        for topic, mass in topic_mass.items():
            index.add(topic, s.topic_weight * min(mass, s.topic_cap))
        return index

    def _add_strong(self, index: _DepartmentIndex, text: str) -> None:
        for unit in self._analyzer.units(text):
            if len(unit.surface) >= self.settings.min_strong_length:
                index.strong.setdefault(unit.primary, set()).add(unit.surface)

    @staticmethod
    def _is_strong(index: _DepartmentIndex, term: str, surface: str) -> bool:
        """Whether ``surface`` is an inflected form of a configured keyword or the name.

        The stem alone is not enough: "drucken" and "Drucker" share one, but a
        question about printing a page is not a request for the printer people.
        Inflection in German appends ("Drucker", "Druckern"; "Bauanträge" after
        normalisation), so the written word must be the configured one plus an
        inflection ending; a derived word ("telefonisch") shares the stem only.
        """
        return any(
            surface.startswith(written) and surface[len(written) :] in _INFLECTIONS
            for written in index.strong.get(term, ())
        )

    def _signals(self, text: str) -> tuple[list[_Signal], set[str]]:
        """What each word of the request reaches in the index, and the words' stems."""
        s = self.settings
        signals: list[_Signal] = []
        if _reports_fault(text):
            signals.append(_Signal("", {_FAULT: (1.0, False)}, specific=True))
        primaries: set[str] = set()
        for unit in self._analyzer.units(text, query=True):
            primaries.add(unit.primary)
            # Two-edit typo repairs and thesaurus guesses (below the threshold) aim at
            # a vocabulary of a few hundred words and mostly hit the wrong one.
            reach: _Reach = {
                term: (factor, term == unit.primary)
                for term, factor in unit.alternatives.items()
                if factor >= s.min_alternative_weight
            }
            word = unit.primary
            if len(word) >= s.min_part_length:
                for candidate in self._long_terms:
                    if candidate == word:
                        continue
                    if word.endswith(candidate):
                        factor = s.head_factor
                    elif word.startswith(candidate):
                        factor = s.modifier_factor
                    elif candidate.startswith(word) or candidate.endswith(word):
                        factor = s.part_of_factor
                    else:
                        continue
                    if factor > reach.get(candidate, (0.0, False))[0]:
                        reach[candidate] = (factor, False)
            signals.append(_Signal(unit.surface, reach))
        return signals, primaries

    def text_evidence(self, text: str) -> dict[str, tuple[float, int]]:
        """Per department: score from the request text and the weight of evidence.

        Each word of the request contributes through the one department term it
        reaches best, so a word that happens to touch a name, a description word
        and a keyword of one department counts once, not three times. A department
        term reached by several words counts once; a topic counts once per word
        reaching it, up to a cap, since several words on a topic are real evidence.

        A configured keyword or the department name, as written (inflected), is the
        coordinator's own word for the department's work and counts
        ``keyword_boost`` times; built-in topic words only support it (see
        :class:`RoutingSettings`).

        The evidence counts the request's words that reached the department: two
        for a configured keyword or name as written, a keyword phrase or a fault
        report, one for anything else. It keeps a single generic word ("Ablage",
        "Adressen", "drucken") from deciding against a known requester department,
        however well another department owns its topic.
        """
        s = self.settings
        signals, primaries = self._signals(text)
        evidence: dict[str, tuple[float, int]] = {}
        for index in self._departments:
            words: dict[str, float] = {}
            topics: dict[str, float] = {}
            units = 0
            for signal in signals:
                best_term: str | None = None
                best_value = 0.0
                strength = 0
                for term, (factor, own_stem) in signal.reach.items():
                    weight = index.weights.get(term)
                    if weight is None:
                        continue
                    value = self._idf[term] * weight * factor
                    if own_stem and self._is_strong(index, term, signal.surface):
                        value *= s.keyword_boost
                        strength = 2
                    if value > best_value:
                        best_term, best_value = term, value
                    strength = max(strength, 2 if signal.specific else 1)
                if best_term is None:
                    continue
                units += strength
                if best_term.startswith(_TOPIC_PREFIX):
                    topics[best_term] = topics.get(best_term, 0.0) + best_value
                else:
                    words[best_term] = max(words.get(best_term, 0.0), best_value)
            total = sum(words.values())
            for topic, value in topics.items():
                single = self._idf[topic] * index.weights[topic]
                total += min(value, s.topic_hits_cap * single)
            for phrase, weight in index.phrases:
                if phrase <= primaries:
                    total += s.keyword_boost * weight * max(self._idf.get(t, 1.0) for t in phrase)
                    units += 2
            evidence[index.id] = (total, units)
        return evidence

    def text_scores(self, text: str) -> dict[str, float]:
        """Evidence from the request text alone, per department."""
        return {k: score for k, (score, _units) in self.text_evidence(text).items()}

    def explain(self, text: str) -> dict[str, list[str]]:
        """Index terms of each department that the request reached (for ``lotsenbot route``).

        Lets a coordinator see why a request went where it went and which keyword
        would have helped.
        """
        signals, _primaries = self._signals(text)
        reached = {term for signal in signals for term in signal.reach}
        return {
            index.id: sorted(term for term in reached if term in index.weights)
            for index in self._departments
        }

    def hint_strengths(self, faq_hints: Iterable[tuple[str, float]]) -> dict[str, float]:
        """How strongly the FAQ hints point to each known department, 0..1 (see the settings).

        Unknown department ids are dropped so a stale FAQ cannot break routing.
        """
        s = self.settings
        best: dict[str, float] = {}
        known = set(self.department_ids)
        for department_id, hint in faq_hints:
            if department_id in known and hint > best.get(department_id, 0.0):
                best[department_id] = hint
        span = max(s.hint_full - s.hint_floor, 1e-9)
        return {
            department_id: max(0.0, min(1.0, (hint - s.hint_floor) / span))
            for department_id, hint in best.items()
        }

    def route(
        self,
        text: str,
        faq_hints: Iterable[tuple[str, float]] = (),
        requester_department: str | None = None,
    ) -> RoutingDecision:
        """Decide where ``text`` goes.

        ``faq_hints`` are (department id, score in 0..1) of the closest FAQ
        entries; unknown ids are ignored so a stale FAQ cannot break routing.
        ``requester_department`` is the requester's own department if known.
        """
        s = self.settings
        if not self._departments:
            return RoutingDecision("triage", None, {}, "no_departments")
        evidence = self.text_evidence(text)
        text_scores = {k: score for k, (score, _units) in evidence.items()}
        scores = dict(text_scores)
        units = {k: count for k, (_score, count) in evidence.items()}
        for department_id, strength in self.hint_strengths(faq_hints).items():
            if strength > 0.0:
                scores[department_id] += s.hint_weight * strength
                units[department_id] += 1
        scores = {k: round(v, 4) for k, v in scores.items()}
        if len(self._departments) == 1 and not self._departments[0].specialist:
            # A network with one team (a small Gemeinde): every request is theirs, and
            # triage would only add a coordinator's step. A lone specialist department
            # still takes only its own topics. (The scores still show the evidence.)
            return RoutingDecision("route", self._departments[0].id, scores, "only_department")

        own = requester_department if requester_department in scores else None
        if own is not None and self._any_specialist:
            # A colleague's own pilots handle everything but specialist topics.
            candidates = [d.id for d in self._departments if d.specialist or d.id == own]
        else:
            candidates = [d.id for d in self._departments]
        # The requester's own department gets their request anyway when no specialist is
        # clearly meant, so its own words (the folder "Wohngeld", the "Formulare" an
        # organisation unit edits) mostly describe the context, not who should act.
        ranking = dict(scores)
        if own is not None:
            ranking[own] *= s.own_department_factor
        ranked = sorted(candidates, key=lambda d: ranking[d], reverse=True)
        best = ranked[0]
        best_score = ranking[best]
        runner_up = ranking[ranked[1]] if len(ranked) > 1 else 0.0
        # A hint supports text evidence but never stands in for it: the FAQ's closest
        # entry can be close for reasons that say nothing about who should do the work.
        confident = best_score >= s.min_score and (
            units[best] >= s.min_evidence
            or (text_scores[best] >= s.strong_score and not (own and _asks_how_to(text)))
        )
        lead = best_score - runner_up
        clear = lead >= s.min_margin and lead >= s.min_relative_margin * best_score
        if confident and clear:
            return RoutingDecision("route", best, scores, "topic")
        if own is not None and (not confident or own in ranked[:2]):
            return RoutingDecision("route", own, scores, "own_department")
        reason: Reason = "uncertain" if confident else "no_match"
        return RoutingDecision("triage", None, scores, reason)


def route(
    text: str,
    departments: Iterable[DepartmentLike],
    faq_hints: Iterable[tuple[str, float]] = (),
    requester_department: str | None = None,
    *,
    synonyms: SynonymSet | None = None,
    settings: RoutingSettings | None = None,
) -> RoutingDecision:
    """One-off routing; long-running code should keep a :class:`TopicRouter`."""
    router = TopicRouter(departments, synonyms=synonyms, settings=settings)
    return router.route(text, faq_hints, requester_department)
