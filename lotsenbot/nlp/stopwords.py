"""German stopwords for retrieval, in normalised (folded) form.

The list is deliberately short and conversational: it holds function words, pronouns,
auxiliaries and the fillers staff put around a question ("hallo", "bitte", "mal", "eigentlich").
Words that carry meaning in a help-desk question stay out of it even when generic lists include
them: "neu", "zweit", "werden" ("Wie werde ich Lotsin?"), "online". Light verbs ("brauche",
"bekomme") and negation ("nicht", "kein") are stopwords: "Wie bekomme ich …" says nothing about
the topic, and "geht nicht" is covered by the synonym group of "geht" (Störung). "andere" is
missing on purpose: folded, "ändere" becomes "andere".

Every entry is already folded by :func:`lotsenbot.nlp.text.normalize` (lower case, no umlauts,
ß → ss), so callers compare normalised tokens against it directly.
"""

from __future__ import annotations

_WORDS = """
a ab aber alle allem allen aller alles als also am an auch auf aus bei beim
bin bis bitte bzw da dabei damit dann dar daran darauf darf darfst durfen das dass davon dazu
dein deine deinem deinen deiner dem den denen denn der deren des dessen deshalb dich die dies
diese diesem diesen dieser dieses dir doch dort du durch eben eigentlich ein eine einem einen
einer eines einfach er es etc etwas euch euer eure fur gerade gern gerne gibt habe haben hab
hast hat hatte hatten hallo hi hey hier hin hinter ich ihm ihn ihnen ihr ihre ihrem ihren ihrer
im in ins ist ja je jemand jetzt kann kannst konnen konnte konnten man mal mehr mich mir mit
moechte mochte mochten muss musst mussen musste mein meine meinem meinen meiner meines nach
nun nur ob oder ohne sehr sein seine seinem seinen seiner sich sie sind so soll sollen sollte
sondern sonst uber um und uns unser unsere unserem unseren unserer unter viel viele vom von
vor wann war waren warum was weil welche welchem welchen welcher welches wem wen wenn wer
wessen wie wieder will wir wird wo woher wohin worden wurde wurden zu zum zur zwar zwischen
danke dank vielen tag guten morgen moin servus lg gruss grusse okay ok eig bzgl evtl
uns euch mein tun machen mache macht gemacht
brauche brauchen braucht benotige benotigen benotigt bekomme bekommen bekommt kriege kriegen
nicht kein keine keinen keinem keiner wahrend selbst immer schon noch bereits einmal
nichts etwas komme kommen kommt komm
aufs aufm ans ums ubers ubern furs vors vorm hinterm unterm durchs ne nen nem ner
"""

STOPWORDS: frozenset[str] = frozenset(_WORDS.split())
"""Normalised German stopwords (see the module docstring for what is deliberately missing)."""
