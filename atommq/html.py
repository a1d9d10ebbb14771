"""HTML pages for a person with a browser, from plain objects: the list of feeds, a page of a
feed, one message. No HTTP, no SQL; the headers that keep a page safe (CSP) are app.py's.

Nothing a publisher sent is ever markup here: every title, text and HTML message is escaped
(html.escape) and shown as text. A message of html or xhtml is rendered only apart, in a frame
that the browser sandboxes (no scripts, no forms, no network: app.py's RENDERED_POLICY).

Like the Atom and JSON renderings, a message's part of a feed page (stored_article) is made
once, when it is published, and stored: a page joins them. Its links are relative to the feed
(`entry=UUID`), which the page's <base href> makes the feed's own address.
"""

import base64
import binascii
import re
from html import escape

from atommq.atom import is_xml_media_type, xhtml_as_html
from atommq.jsonfeed import is_json_media_type
from atommq.model import Consumer, Feed, Message, Page, message_uuid

# Characters no page shows as text: C0 controls but tab and line ends, DEL, and the two
# non-characters XML excludes.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
# The most characters of a message a feed page shows; its own page shows it whole.
EXCERPT = 2000


def _e(text: str) -> str:
    return escape(text, quote=True)


def content_kind(content_type: str) -> str:
    """How a message's content is shown: "text" (as it is), "markup" (html or xhtml: its source
    as text, rendered apart in a sandbox), "json" (Base64 of JSON text: shown as that text), or
    "binary" (Base64: its type, size and a download)."""
    kind = content_type.lower()
    if kind in ("html", "xhtml") or kind.split(";", 1)[0].strip() == "text/html":
        return "markup"
    if kind in ("", "text") or kind.startswith("text/") or is_xml_media_type(kind):
        return "text"
    return "json" if is_json_media_type(kind) else "binary"


def _shown(content_type: str, content: str) -> tuple[str, str | None]:
    """How content is shown ("text", "markup" or "binary", as content_kind) and the text shown
    (None for binary): JSON is its text, when that is UTF-8."""
    kind = content_kind(content_type)
    if kind == "json":
        try:
            text = base64.b64decode(content, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
            return "binary", None
        # Control characters (NUL above all, which PostgreSQL text cannot hold) are no text.
        return ("binary", None) if _CONTROL.search(text) else ("text", text)
    return kind, None if kind == "binary" else content


def binary_size(encoded: str) -> int | None:
    """The size in bytes of Base64 content (None: it is not Base64)."""
    try:
        return len(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        return None


def _label(content_type: str) -> str:
    return {"": "text", "html": "html, shown as its source", "xhtml": "xhtml, shown as its source"}.get(
        content_type, content_type
    )


def _when(stamp: str) -> str:
    """An RFC 3339 UTC time as a person reads it: 2026-12-03 22:46:31 UTC."""
    return f"{stamp[:10]} {stamp[11:19]} UTC" if len(stamp) >= 19 else stamp


def _heading(message: Message) -> str:
    return message.draft.title.strip() or _when(message.published)


def stored_article(message: Message) -> bytes:
    """The message as it stands in a feed page (an <article>), as stored: links relative to the
    feed; content over EXCERPT characters cut, with a link to the whole."""
    draft, uuid = message.draft, message_uuid(message.id)
    heading, meta = _meta(message, brief=True)
    parts = [
        f'<article class="message" id="m-{uuid}">',
        f'<h2><a href="entry={uuid}">{heading}</a></h2>',
        meta,
    ]
    kind, text = _shown(draft.content_type, draft.content)
    if text is None:
        parts.append(_binary(draft.content_type, draft.content, f"entry={uuid}?format=raw"))
    else:
        parts.append(f'<pre class="content {kind}">{_e(text[:EXCERPT])}</pre>')
        if len(text) > EXCERPT:
            rest = len(text) - EXCERPT
            parts.append(f'<p class="more"><a href="entry={uuid}">{rest} more characters</a></p>')
    parts.append("</article>\n")
    return "".join(parts).encode("utf-8")


_ARTICLE_OPEN = b'<article class="message" id="m-'


def article_uuid(stored: bytes | Message) -> str:
    """The uuid of a message, from its stored_article or itself (for the next page's cursor)."""
    if isinstance(stored, Message):
        return message_uuid(stored.id)
    if not stored.startswith(_ARTICLE_OPEN):  # cannot happen
        raise AssertionError(f"a stored article begins {stored[:100]!r}")
    return stored[len(_ARTICLE_OPEN) : len(_ARTICLE_OPEN) + 36].decode("ascii")


def _meta(message: Message, brief: bool = False) -> tuple[str, str]:
    """A message's heading (its title; else its time, and then the time is not said again) and
    the line under it: time, type, author; `brief` (in a feed page): not the type of a plain
    text message, and no line when nothing is left to say."""
    draft = message.draft
    when = f'<time datetime="{_e(message.published)}">{_when(message.published)}</time>'
    title = draft.title.strip()
    said = [when] if title else []
    if not (brief and draft.content_type in ("", "text")):
        said.append(f'<span class="type">{_e(_label(draft.content_type))}</span>')
    if draft.author:
        said.append(f'<span class="author">by {_e(draft.author)}</span>')
    meta = f'<p class="meta">{" ".join(said)}</p>' if said else ""
    return (_e(title) if title else when), meta


def _binary(content_type: str, encoded: str, href: str) -> str:
    size = binary_size(encoded)
    shown = f"{_e(content_type)}, {size:,} bytes" if size is not None else _e(content_type)
    return f'<p class="content binary">{shown} <a href="{_e(href)}" download>download</a></p>'


def _page(title: str, body: str, *, base: str | None = None, links: str = "", static: str = "") -> bytes:
    """A whole page: its <head> (the style sheet and script are AtomMQ's own files, at
    `static`), then `body`."""
    head = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
    ]
    if base is not None:
        head.append(f'<base href="{_e(base)}">')
    head.append(f'<link rel="icon" href="{_e(static)}atommq.svg" type="image/svg+xml">')
    head.append(f'<link rel="stylesheet" href="{_e(static)}atommq.css">')
    head.append(f'<script src="{_e(static)}atommq.js" defer></script>')
    head.append(links)
    head.append("</head>")
    return ("\n".join(head) + f"\n<body>\n{body}\n</body>\n</html>\n").encode("utf-8")


def _alternates(atom_href: str, json_href: str, title: str) -> str:
    return (
        f'<link rel="alternate" type="application/atom+xml" href="{_e(atom_href)}" title="{_e(title)} (Atom)">\n'
        f'<link rel="alternate" type="application/feed+json" href="{_e(json_href)}" title="{_e(title)} (JSON)">'
    )


def render_service(
    feeds: list[tuple[Feed, str]],
    consumers: dict[str, list[Consumer]],
    held: dict[str, int],
    home: str,
    static: str,
) -> bytes:
    """The feeds the caller may read: each with how many messages it holds, the time of its
    newest, and its named consumers' lag."""
    rows = []
    for feed, href in feeds:
        lags = consumers.get(feed.name, [])
        lag = "".join(f"<li>{_consumer(c)}</li>" for c in lags)
        rows.append(
            f'<tr><th scope="row"><a href="{_e(href)}">{_e(feed.name)}</a></th>'
            f'<td class="count">{held.get(feed.name, 0):,}</td>'
            f'<td><time datetime="{_e(feed.updated)}">{_when(feed.updated)}</time></td>'
            f"<td>{f'<ul>{lag}</ul>' if lag else 'none'}</td></tr>"
        )
    table = (
        '<table class="feeds"><caption>Feeds, by name</caption>'
        '<thead><tr><th scope="col">Feed</th><th scope="col">Messages</th><th scope="col">Newest message</th>'
        '<th scope="col">Named consumers</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else "<p>No feeds yet: a feed is made by its first message.</p>"
    )
    body = f"<header><h1>AtomMQ</h1></header>\n<main>\n{table}\n</main>"
    links = _alternates(f"{home}/?format=atom", f"{home}/?format=json", "AtomMQ feeds")
    return _page("AtomMQ", body, links=links, static=static)


def _consumer(consumer: Consumer) -> str:
    text = f"{_e(consumer.name)}: {consumer.behind} behind"
    if consumer.behind_seconds > 0:
        text += f", the oldest unread {age(consumer.behind_seconds)} old"
    if consumer.missed:
        text += f", missed {consumer.missed}"
    return text


def age(seconds: float) -> str:
    """A duration as a person reads it: 12.4 s, 3.0 min, 20.3 h, 2.0 days."""
    for unit, scale in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= scale:
            return f"{seconds / scale:.1f} {unit}"
    return f"{seconds:.1f} s"


def render_feed(
    page: Page,
    *,
    feed_href: str,
    home: str,
    static: str,
    self_href: str,
    next_href: str | None,
    newest_href: str,
    form: str,
) -> bytes:
    """A page of a feed, oldest message first: the messages' stored articles (made now for a
    message stored without one), a link to the next page or, on the last, one that reloads it
    (a script there waits for new messages instead); `form`: the publish form, or a line
    saying how to get it (form_for)."""
    articles = b"".join(a if isinstance(a, bytes) else stored_article(a) for a in page.entries)
    name = page.feed.name
    if next_href is not None:
        paging = (
            f'<a rel="next" href="{_e(next_href)}">Next page</a> · <a href="{_e(newest_href)}">Newest</a>'
        )
        follow = ""
    else:
        paging = (
            f'<a href="{_e(newest_href)}">Newest</a><span class="reload"> · '
            f'<a href="{_e(self_href)}">Check for new messages</a></span>'
        )
        follow = ' data-follow="yes"'
    empty = "" if page.entries else '<p class="empty">No messages here yet.</p>'
    body = (
        f'<header><nav><a href="{_e(home)}/">All feeds</a></nav><h1>{_e(name)}</h1></header>\n'
        f'<main data-feed="{_e(feed_href)}"{follow}>\n{empty}<div class="messages">\n'
        "\x00ARTICLES\x00"
        f'</div>\n<p class="status" role="status" aria-live="polite"></p>\n'
        f'<nav class="pages">{paging}</nav>\n{form}\n</main>'
    )
    links = _alternates(f"{feed_href}?format=atom", f"{feed_href}?format=json", name)
    document = _page(f"{name} · AtomMQ", body, base=feed_href + "/", links=links, static=static)
    before, after = document.split(b"\x00ARTICLES\x00")
    return before + articles + after


def render_no_feed(name: str, line: str, *, home: str, static: str, form: str) -> bytes:
    """The page of a feed that does not exist, before its first message or once deleted: the
    404's line, and the form that makes it (or how to get that form: form_for)."""
    body = (
        f'<header><nav><a href="{_e(home)}/">All feeds</a></nav><h1>{_e(name)}</h1></header>\n'
        f'<main>\n<p class="empty">{_e(line)}</p>\n{form}\n</main>'
    )
    return _page(f"{name} · AtomMQ", body, static=static)


def form_for(feed_href: str, login_href: str, may_publish: bool, may_log_in: bool, key: str) -> str:
    """The publish form of a feed page for a caller who may publish; for one who may once
    logged in, a link that asks the browser to log in (`login_href`); else nothing."""
    if may_publish:
        return publish_form(feed_href, key)
    if may_log_in:
        return f'<p class="login"><a href="{_e(login_href)}">Log in to publish</a></p>'
    return ""


def publish_form(feed_href: str, key: str) -> str:
    """The form a browser publishes with; `key`, new for each form shown, is its Idempotency-Key
    (a form sent twice, by a reload or a double click, stores one message)."""
    return (
        f'<form class="publish" method="post" action="{_e(feed_href)}/form">'
        "<h2>Publish a message</h2>"
        f'<input type="hidden" name="key" value="{_e(key)}">'
        '<p><label for="title">Title (optional)</label>'
        '<input id="title" name="title" maxlength="1000"></p>'
        '<p><label for="content">Message</label>'
        '<textarea id="content" name="content" rows="5" required></textarea></p>'
        "<fieldset><legend>It is</legend>"
        '<label><input type="radio" name="kind" value="text" checked> plain text</label> '
        '<label><input type="radio" name="kind" value="atom"> an Atom entry (XML)</label></fieldset>'
        '<p><button type="submit">Publish</button></p></form>'
    )


def render_form_page(name: str, feed_href: str, home: str, static: str, key: str) -> bytes:
    body = (
        f'<header><nav><a href="{_e(home)}/">All feeds</a> · <a href="{_e(feed_href)}">{_e(name)}</a></nav>'
        f"<h1>Publish to {_e(name)}</h1></header>\n<main>{publish_form(feed_href, key)}</main>"
    )
    return _page(f"Publish to {name} · AtomMQ", body, static=static)


def render_entry(message: Message, *, feed_href: str, home: str, static: str) -> bytes:
    """One message, whole: its text as text; html or xhtml as its source, and rendered in a
    sandboxed frame; binary content as its type and size, with a download link."""
    draft, uuid = message.draft, message_uuid(message.id)
    entry_href = f"{feed_href}/entry={uuid}"
    kind, text = _shown(draft.content_type, draft.content)
    if text is None:
        content = _binary(draft.content_type, draft.content, f"{entry_href}?format=raw")
    else:
        content = f'<pre class="content {kind}">{_e(text)}</pre>'
    if kind == "markup":
        content = (
            '<h2>Rendered</h2><p class="note">In a frame that runs no scripts, sends no forms and '
            "loads nothing.</p>"
            f'<iframe class="rendered" sandbox src="{_e(entry_href)}?format=rendered" '
            f'title="The message rendered"></iframe><h2>Source</h2>{content}'
        )
    summary = ""
    if draft.summary is not None:
        summary = f'<p class="summary">{_e(draft.summary)}</p>'
    heading, meta = _meta(message)
    body = (
        f'<header><nav><a href="{_e(home)}/">All feeds</a> · <a href="{_e(feed_href)}">'
        f"{_e(message.feed)}</a></nav><h1>{heading}</h1>\n{meta}\n"
        f'<p class="id">{_e(message.id)}</p></header>\n<main>{summary}{content}</main>'
    )
    links = _alternates(f"{entry_href}?format=atom", f"{entry_href}?format=json", message.id)
    return _page(f"{_heading(message)} · {message.feed} · AtomMQ", body, links=links, static=static)


# Elements that would make the reader's browser connect somewhere (a preconnect or an <iframe>
# is no fetch a CSP can refuse: the publisher would learn who read the message, and when) or
# that have no place in a message shown in a frame. Dropped from a rendered view, with all
# they hold; the sandbox and its CSP stay, for what is left.
_DROPPED = (
    "script", "noscript", "link", "meta", "base", "iframe", "frame", "frameset", "object",
    "embed", "applet", "portal", "fencedframe", "template", "form",
)  # fmt: skip


def rendered(message: Message) -> bytes:
    """An html or xhtml message's markup as a document of its own, for the sandboxed frame:
    parsed as a browser would (xhtml as HTML first), without the _DROPPED elements."""
    import lxml.html  # here, not above: a CGI process that serves no rendered view pays nothing

    content = message.draft.content
    if message.draft.content_type == "xhtml":
        content = xhtml_as_html(content)
    root = lxml.html.fragment_fromstring(content, create_parent="div") if content.strip() else None
    markup = ""
    if root is not None:
        for node in list(root.iter(*_DROPPED)):
            node.drop_tree()
        for node in root.iter():  # nothing runs in the sandbox; handlers and script links not even kept
            for name, value in list(node.attrib.items()):
                script_link = "".join(value.split()).lower().startswith("javascript:")
                if name.lower().startswith("on") or script_link:
                    del node.attrib[name]
        markup = lxml.html.tostring(root, encoding="unicode")
    return f'<!DOCTYPE html>\n<meta charset="utf-8">\n{markup}\n'.encode()
