"""Is an emitted document valid? The RFC 4287 / RFC 5023 RELAX NG schemas (and RFC 4287's three
Schematron rules), then what the W3C Feed Validator and APE (the Atom Protocol Exerciser) check
that no schema says: RFC 4287 4.1.1.1's summary, RFC 3339 dates, app:edited (RFC 5023 10.2),
the self link against the URL the document came from, metadata before entries, Base64 that
decodes. The validators' ERRORs are asserted; their warnings are left to a reading by hand."""

import base64
import datetime
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from lxml import etree, isoschematron

SCHEMAS = Path(__file__).resolve().parent / "schemas"
ATOM = "http://www.w3.org/2005/Atom"
APP = "http://www.w3.org/2007/app"
NS = {"a": ATOM, "app": APP}
_ATOM = etree.RelaxNG(etree.parse(str(SCHEMAS / "atom.rng")))
_ATOM_RULES = isoschematron.Schematron(etree.parse(str(SCHEMAS / "atom-rfc4287-rules.sch")))
_APP = etree.RelaxNG(etree.parse(str(SCHEMAS / "app.rng")))
# RFC 3339 date-time as the W3C Feed Validator reads it: upper-case T and Z.
_DATE = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)\Z")
_ID = re.compile(r"\Aurn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def validate(content_type: str, body: bytes, location: str | None = None) -> None:
    """Assert that a document is valid Atom or AtomPub, and passes the validators' checks;
    `location` is the URL it was fetched from, which a feed's rel="self" must be."""
    if content_type.startswith(("application/feed+json", "application/json")):
        check_json(json.loads(body), location)
        return
    if content_type.startswith("text/html"):
        check_page(body)
        return
    document = etree.fromstring(body)
    if content_type.startswith("application/atom+xml"):
        assert _ATOM.validate(document), _ATOM.error_log
        assert _ATOM_RULES.validate(document), _ATOM_RULES.error_log
        if document.tag == f"{{{ATOM}}}feed":
            check_feed(document, location)
        else:
            check_entry(document, standalone=True)
    elif content_type.startswith("application/atomsvc+xml"):
        assert _APP.validate(document), _APP.error_log


def check_json(document: Any, location: str | None) -> None:
    """JSON Feed 1.1's rules for a feed (version, title, items; each item an id and content),
    its feed_url the URL it came from; an item alone; or the list of feeds."""
    if "feeds" in document:
        assert all({"name", "url", "id", "updated", "consumers"} <= set(f) for f in document["feeds"]), (
            document
        )
        for consumer in (c for f in document["feeds"] for c in f["consumers"]):
            check_consumer(consumer)
        return
    if "behind" in document:  # a named consumer
        check_consumer(document)
        return
    items = document["items"] if "version" in document else [document]
    if "version" in document:
        assert document["version"] == "https://jsonfeed.org/version/1.1"
        assert isinstance(document["title"], str) and document["title"]
        if location is not None:
            assert unquote(document["feed_url"]) == unquote(location), (document["feed_url"], location)
        ids = [item["id"] for item in items]
        assert len(set(ids)) == len(ids), "an id twice in one page"
    for item in items:
        check_id(item["id"])
        assert isinstance(item.get("content_text", item.get("content_html")), str), item
        check_date(item["date_published"])
        check_date(item["date_modified"])
        assert set(item) <= {
            "id", "url", "title", "content_text", "content_html", "summary",
            "date_published", "date_modified", "authors", "_atommq",
        }, item  # fmt: skip
        if item["_atommq"].get("content_encoding") == "base64":
            base64.b64decode(item["content_text"], validate=True)


def check_page(body: bytes) -> None:
    """An AtomMQ page: a whole HTML document in English with a title and one <h1>, whose only
    scripts are AtomMQ's own file (no inline script, no handler attributes: nothing from a
    message can run), and whose form fields are labelled."""
    import lxml.html

    assert body.startswith(b"<!DOCTYPE html>\n"), body[:40]
    page = lxml.html.document_fromstring(body)
    assert page.get("lang") == "en" and page.findtext(".//title"), body[:300]
    assert len(page.findall(".//h1")) == 1
    for script in page.iter("script"):
        assert script.get("src", "").endswith("/atommq.js") and not (script.text or "").strip(), script
    for element in page.iter():
        if isinstance(element.tag, str):
            assert not [name for name in element.attrib if name.lower().startswith("on")], element.attrib
            href = element.get("href", "") + element.get("src", "") + element.get("action", "")
            assert not href.strip().lower().startswith(("javascript:", "data:")), href
    labelled = {label.get("for") for label in page.iter("label")}
    for field in page.iter("input", "textarea"):
        if field.get("type") not in ("hidden", "radio"):
            assert field.get("id") in labelled, field.attrib


def check_consumer(consumer: Any) -> None:
    """A named consumer's JSON: where it is and its lag, each field of its type."""
    assert set(consumer) - {"feed"} == {"name", "last", "updated", "behind", "behind_seconds", "missed"}, (
        consumer
    )
    check_id(consumer["last"])
    check_date(consumer["updated"])
    assert all(isinstance(consumer[k], int) and consumer[k] >= 0 for k in ("behind", "missed")), consumer
    assert isinstance(consumer["behind_seconds"], (int, float)) and consumer["behind_seconds"] >= 0, consumer


def check_feed(feed: Any, location: str | None) -> None:
    children = [child for child in feed if isinstance(child.tag, str)]
    first_entry = next((i for i, c in enumerate(children) if c.tag == f"{{{ATOM}}}entry"), len(children))
    # MisplacedMetadata: the feed's own elements all come before its first entry.
    assert all(c.tag == f"{{{ATOM}}}entry" for c in children[first_entry:]), "feed metadata after an entry"
    check_id(feed.findtext("a:id", namespaces=NS))
    check_date(feed.findtext("a:updated", namespaces=NS))
    selves = feed.findall("a:link[@rel='self']", NS)
    assert len(selves) == 1, "a feed has one rel=self link"
    assert selves[0].get("type") == "application/atom+xml", "SelfNotAtom: the validator wants the bare type"
    if location is not None:
        # SelfDoesntMatchLocation: the same URL, however its percent-encoding is spelt.
        assert unquote(selves[0].get("href")) == unquote(location), (selves[0].get("href"), location)
    entries = feed.findall("a:entry", NS)
    ids = [entry.findtext("a:id", namespaces=NS) for entry in entries]
    assert len(set(ids)) == len(ids), "an id twice in one page"
    for entry in entries:
        check_entry(entry, standalone=False)


def check_entry(entry: Any, standalone: bool) -> None:
    check_id(entry.findtext("a:id", namespaces=NS))
    for name in ("a:updated", "a:published", "app:edited"):
        found = entry.findall(name, NS)
        assert len(found) == 1, f"an entry has one {name}"  # app:edited: APE counts a missing one
        check_date(found[0].text)
    assert entry.findtext("app:edited", namespaces=NS) == entry.findtext("a:updated", namespaces=NS)
    if standalone:  # no feed author to fall back on
        assert (entry.findtext("a:author/a:name", namespaces=NS) or "").strip(), "an entry without an author"
    content = entry.find("a:content", NS)
    if content is None:
        return
    kind = content.get("type", "text")
    if content.get("src") is not None or needs_summary(kind):
        assert entry.find("a:summary", NS) is not None, (
            f"RFC 4287 4.1.1.1: content of type {kind!r} needs a summary"
        )
    if is_base64(kind):  # NotBase64 when it fails
        base64.decodebytes((content.text or "").encode("ascii"))


def is_base64(kind: str) -> bool:
    """RFC 4287 4.1.3.3: a media type that is neither XML nor text/* holds Base64."""
    base = kind.partition(";")[0].strip().lower()
    return "/" in base and not (base.endswith(("+xml", "/xml")) or base.startswith("text/"))


def needs_summary(kind: str) -> bool:
    """RFC 4287 4.1.1.1, and the W3C Feed Validator's reading of it, which takes the type as
    written (case and parameters included): Application/XML and application/xml;v=1 too."""
    as_written = "/" in kind and not (kind.endswith(("+xml", "/xml")) or kind.startswith("text/"))
    return as_written or is_base64(kind)


def check_id(text: str | None) -> None:
    assert text is not None and _ID.match(text), f"InvalidUUID: {text!r}"


def check_date(text: str | None) -> None:
    assert text is not None and _DATE.match(text), f"InvalidRFC3339Date: {text!r}"
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))  # a real date and time
    now = datetime.datetime.now(datetime.UTC)
    # ImplausibleDate: before 1990 or more than a day ahead.
    assert datetime.datetime(1990, 1, 1, tzinfo=datetime.UTC) <= moment <= now + datetime.timedelta(days=1)
