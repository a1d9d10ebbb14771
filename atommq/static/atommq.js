// AtomMQ's feed page: new messages appear as they are published, by long polling the feed's
// JSON (?start_after=LAST&wait=25). Only on the last page (data-follow); every message is put
// in with textContent, never as markup. Without this script the page has a reload link.
"use strict";
(function () {
  const main = document.querySelector("main[data-follow]");
  if (!main) return;
  const feed = main.dataset.feed;
  const list = main.querySelector(".messages");
  const status = main.querySelector(".status");
  const reload = main.querySelector(".reload"); // the link, with its separator
  let last = lastId();
  let etag = null;

  function lastId() {
    const articles = list.querySelectorAll("article.message");
    if (!articles.length) return "";
    return "urn:uuid:" + articles[articles.length - 1].id.slice(2);
  }

  function el(name, className, text) {
    const node = document.createElement(name);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function when(stamp) {
    return stamp.length >= 19 ? stamp.slice(0, 10) + " " + stamp.slice(11, 19) + " UTC" : stamp;
  }

  function article(item) {
    const uuid = item.id.replace(/^urn:uuid:/, "");
    const extension = item._atommq || {};
    const type = extension.content_type || "text";
    const node = el("article", "message new");
    node.id = "m-" + uuid;
    const heading = el("h2");
    const title = (item.title || "").trim();
    const link = el("a", "", title);
    link.href = "entry=" + uuid;
    heading.append(link);
    const meta = el("p", "meta");
    const time = el("time", "", when(item.date_published));
    time.dateTime = item.date_published;
    const said = []; // as the server's line: its parts, a space between
    if (title) said.push(time);
    else link.append(time); // without a title the time is the heading, said once
    const label = type === "html" || type === "xhtml" ? type + ", shown as its source" : type;
    if (type !== "text") said.push(el("span", "type", label));
    if (item.authors && item.authors.length) said.push(el("span", "author", "by " + item.authors[0].name));
    said.forEach((part, i) => (i ? meta.append(" ", part) : meta.append(part)));
    node.append(heading);
    if (said.length) node.append(meta); // a plain text message without title or author has no line
    if (extension.content_encoding === "base64") {
      const size = Math.floor((item.content_text.replace(/=+$/, "").length * 3) / 4);
      const binary = el("p", "content binary", type + ", " + size.toLocaleString("en") + " bytes ");
      const download = el("a", "", "download");
      download.href = "entry=" + uuid + "?format=raw";
      download.setAttribute("download", "");
      binary.append(download);
      node.append(binary);
    } else {
      const text = item.content_html !== undefined ? item.content_html : item.content_text;
      const kind = item.content_html !== undefined ? "markup" : "text";
      node.append(el("pre", "content " + kind, text.slice(0, 2000)));
      if (text.length > 2000) {
        const more = el("p", "more");
        const open = el("a", "", text.length - 2000 + " more characters");
        open.href = "entry=" + uuid;
        more.append(open);
        node.append(more);
      }
    }
    return node;
  }

  function say(text) {
    status.textContent = text;
  }

  async function follow() {
    if (reload) reload.hidden = true;
    say("Waiting for new messages.");
    const empty = main.querySelector("p.empty");
    for (;;) {
      let answer;
      try {
        const headers = { Prefer: "wait=25", Accept: "application/feed+json" };
        if (etag) headers["If-None-Match"] = etag;
        const query = "?start_after=" + encodeURIComponent(last) + "&format=json";
        answer = await fetch(feed + query, { headers: headers, credentials: "same-origin", cache: "no-store" });
      } catch (error) {
        say("Lost the connection to the server; trying again in 5 seconds.");
        await pause(5000);
        continue;
      }
      if (answer.status === 410) {
        say("Messages after the last one shown were removed before they could be shown; reload the page.");
        if (reload) reload.hidden = false;
        return;
      }
      if (answer.status !== 200 && answer.status !== 304) {
        say("The server answered " + answer.status + "; trying again in 5 seconds.");
        await pause(5000);
        continue;
      }
      const waited = answer.headers.has("Preference-Applied");
      if (answer.status === 200) {
        etag = answer.headers.get("ETag");
        const page = await answer.json();
        for (const item of page.items) {
          list.append(article(item));
          last = item.id;
        }
        if (page.items.length) {
          if (empty) empty.remove();
          say(page.items.length + " new message" + (page.items.length === 1 ? "" : "s") + ".");
          continue;
        }
      }
      say("Waiting for new messages.");
      if (!waited) await pause(5000); // the server could not wait: ask again in a while
    }
  }

  function pause(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  follow();
})();
