"""Headless Chromium, driven through chromedriver's W3C WebDriver HTTP API with urllib (no
selenium), and the few Chrome DevTools commands chromedriver passes on (the viewport's size,
full-page screenshots, extra request headers). Knows nothing of AtomMQ.

    driver = Driver()                     # one chromedriver
    with driver.session() as browser:     # one Chromium, with a profile of its own
        browser.get(url); browser.find("h1").text
"""

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The W3C name of the key that marks an element reference in WebDriver's JSON.
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
# Debian's packages: chromium's launcher script (it reads /etc/chromium.d) and chromedriver.
CHROMIUM = "chromium"
CHROMEDRIVER = "chromedriver"


def missing() -> str | None:
    """Why a browser cannot be driven here, or None."""
    for program in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(program) is None:
            return f"{program} is not installed (Debian: chromium, chromium-driver)"
    return None


class WebDriverError(Exception):
    """What chromedriver answered an error with (its W3C error code and message)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Driver:
    """One chromedriver process on a free port of 127.0.0.1; stop() (or leaving a `with`)
    ends it and its browsers."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="chromedriver-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [CHROMEDRIVER, f"--port={self.port}", f"--log-path={self.log.name}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.call("GET", "/status")["ready"]:
                    break
            except (OSError, WebDriverError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = Path(self.log.name).read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"chromedriver did not start; its log ends:\n{log}")
            time.sleep(0.05)

    def call(self, method: str, path: str, body: Any = None, timeout: float = 60) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return json.load(answer)["value"]
        except urllib.error.HTTPError as error:
            value = json.load(error)["value"]
            raise WebDriverError(
                f"{value.get('error')}: {value.get('message', '').splitlines()[0]}"
            ) from None

    @contextmanager
    def session(
        self, width: int = 1280, height: int = 900, args: tuple[str, ...] = ()
    ) -> Iterator["Browser"]:
        """A new Chromium with an empty profile (no logins, no storage), closed on leaving."""
        options = {
            "args": [
                "--headless=new",
                "--no-sandbox",  # root in a container has no user namespaces for Chromium's own
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",  # nothing fetched but what a page asks for
                "--disable-component-update",
                "--disable-features=Translate,MediaRouter,OptimizationHints",
                "--hide-scrollbars",
                f"--window-size={width},{height}",
                *args,
            ],
        }
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"},
            "timeouts": {"script": 30000, "pageLoad": 30000},
        }
        created = self.call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})
        browser = Browser(self, created["sessionId"])
        try:
            browser.viewport(width, height)
            yield browser
        finally:
            try:
                self.call("DELETE", f"/session/{browser.id}")
            except (OSError, WebDriverError):
                pass

    def __enter__(self) -> "Driver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


class Element:
    """An element of the page (or frame) that was current when it was found."""

    def __init__(self, browser: "Browser", reference: str) -> None:
        self.browser = browser
        self.reference = reference

    def _call(self, method: str, what: str, body: Any = None) -> Any:
        return self.browser.call(method, f"/element/{self.reference}/{what}", body)

    @property
    def text(self) -> str:
        """The text the user sees in it (hidden parts are not)."""
        return str(self._call("GET", "text"))

    def attribute(self, name: str) -> str | None:
        value = self._call("GET", f"attribute/{name}")
        return None if value is None else str(value)

    def property(self, name: str) -> Any:
        return self._call("GET", f"property/{name}")

    def click(self) -> None:
        self._call("POST", "click", {})

    def type(self, text: str) -> None:
        self._call("POST", "value", {"text": text})

    def find(self, css: str) -> "Element":
        found = self._call("POST", "element", {"using": "css selector", "value": css})
        return Element(self.browser, found[ELEMENT])

    def find_all(self, css: str) -> list["Element"]:
        found = self._call("POST", "elements", {"using": "css selector", "value": css})
        return [Element(self.browser, f[ELEMENT]) for f in found]

    def displayed(self) -> bool:
        return bool(self._call("GET", "displayed"))


class Browser:
    """One WebDriver session: one Chromium window."""

    def __init__(self, driver: Driver, session_id: str) -> None:
        self.driver = driver
        self.id = session_id

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return self.driver.call(method, f"/session/{self.id}{path}", body)

    def get(self, url: str) -> None:
        """Open `url` and wait until it has loaded (scripts with defer have run)."""
        self.call("POST", "/url", {"url": url})

    @property
    def url(self) -> str:
        return str(self.call("GET", "/url"))

    @property
    def title(self) -> str:
        return str(self.call("GET", "/title"))

    def run(self, script: str, *args: Any) -> Any:
        """The value of a function body run in the page (`arguments` holds `args`)."""
        return self.call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css: str) -> Element:
        found = self.call("POST", "/element", {"using": "css selector", "value": css})
        return Element(self, found[ELEMENT])

    def find_all(self, css: str) -> list[Element]:
        found = self.call("POST", "/elements", {"using": "css selector", "value": css})
        return [Element(self, f[ELEMENT]) for f in found]

    def wait(self, condition: Callable[[], Any], seconds: float = 10, what: str = "") -> Any:
        """The first true value of `condition()`, tried every 50 ms for up to `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                value = condition()
            except WebDriverError:
                value = None  # not there yet (no such element)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {seconds} s for {what or condition}")
            time.sleep(0.05)

    def frame(self, element: Element | None) -> None:
        """Find elements in `element` (an <iframe>) from now on; None: in the page again."""
        target = None if element is None else {ELEMENT: element.reference}
        self.call("POST", "/frame", {"id": target})

    def cdp(self, command: str, **params: Any) -> Any:
        """A Chrome DevTools Protocol command, for the page's target."""
        return self.call("POST", "/goog/cdp/execute", {"cmd": command, "params": params})

    def viewport(self, width: int, height: int, mobile: bool = False) -> None:
        """The page's size in CSS pixels, as a phone's (`mobile`: its viewport meta counts)."""
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )

    def screenshot(self, path: Path, most: int = 4000) -> None:
        """The whole page as a PNG (at most `most` CSS pixels tall), at the viewport's width."""
        metrics = self.cdp("Page.getLayoutMetrics")
        width = metrics["cssLayoutViewport"]["clientWidth"]
        height = min(int(metrics["cssContentSize"]["height"]), most)
        shot = self.cdp(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def log(self, kind: str) -> list[dict[str, Any]]:
        """What Chromium logged since the last call: "browser" (the console, CSP refusals
        among it) or "performance" (DevTools events: every request a page made)."""
        entries = self.call("POST", "/se/log", {"type": kind})
        return list(entries)

    def requests(self) -> list["Sent"]:
        """The requests Chromium made since the last call (or log("performance")), in order,
        with the headers as sent (a login among them) and the status they were answered, or
        why they were not (a request that a page's policy refused is among them)."""
        sent: dict[str, Sent] = {}
        for entry in self.log("performance"):
            event = json.loads(entry["message"])["message"]
            method, params = event["method"], event["params"]
            if method == "Network.requestWillBeSent":
                request, key = params["request"], params["requestId"]
                if "redirectResponse" in params:  # the next request of a redirect: the same id
                    earlier = sent.pop(key)
                    earlier.status = params["redirectResponse"]["status"]
                    sent[f"{key}/{len(sent)}"] = earlier
                # Its ExtraInfo (the headers as sent) may come before it.
                found = sent.setdefault(key, Sent("", "", {}))
                found.method, found.url = request["method"], request["url"]
                continue
            found = sent.setdefault(params.get("requestId", ""), Sent("", "", {}))
            if method == "Network.requestWillBeSentExtraInfo":
                found.headers.update({k.lower(): v for k, v in params["headers"].items()})
            elif method == "Network.responseReceived":
                found.status = params["response"]["status"]
            elif method == "Network.loadingFailed":
                found.blocked = params.get("blockedReason") or params.get("errorText")
        return [s for s in sent.values() if s.url]


@dataclass
class Sent:
    """A request as Chromium sent it."""

    method: str
    url: str
    headers: dict[str, str]  # lower-case names; those the network stack added too (a login)
    status: int | None = None  # None: not answered
    blocked: str | None = None  # why it was not sent or not answered: "csp" (the page's policy), ...
